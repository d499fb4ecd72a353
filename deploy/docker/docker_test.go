// Package docker_test checks /Dockerfile: its shape, a linter, and an
// image of its final stage built with buildah (no Docker engine and no
// registry here) that runs `phase-sidecar version`.
package docker_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/deploy/internal/kit"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

func dockerfile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(kit.Root(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// finalStage returns the instructions from the last FROM on.
func finalStage(t *testing.T, df string) string {
	t.Helper()
	i := strings.LastIndex(df, "\nFROM ")
	if i < 0 {
		t.Fatal("Dockerfile has no second FROM: not multi-stage")
	}
	return df[i+1:]
}

func TestDockerfileShape(t *testing.T) {
	df := dockerfile(t)
	final := finalStage(t, df)
	checks := []struct {
		name string
		in   string
		re   string
	}{
		{"static build", df, `CGO_ENABLED=0`},
		{"version stamped", df, `-X main\.version=\$\{VERSION\}`},
		{"revision stamped", df, `-X main\.revision=\$\{REVISION\}`},
		{"final stage from scratch", final, `(?m)^FROM scratch AS final$`},
		{"non-root uid 65532", final, `(?m)^USER 65532:65532$`},
		{"metrics port", final, `(?m)^EXPOSE 9102$`},
		{"exec-form entrypoint", final, `(?m)^ENTRYPOINT \["/phase-sidecar"\]$`},
		{"binary from the build stage", final, `(?m)^COPY --from=build /out/phase-sidecar /phase-sidecar$`},
		{"OCI version label", final, `org\.opencontainers\.image\.version="\$\{VERSION\}"`},
		{"OCI revision label", final, `org\.opencontainers\.image\.revision="\$\{REVISION\}"`},
		{"OCI source label", final, `org\.opencontainers\.image\.source=`},
	}
	if regexp.MustCompile(`(?m)^RUN `).MatchString(final) {
		t.Error("the final stage has a RUN: scratch has no shell to run it")
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.re).MatchString(c.in) {
			t.Errorf("%s: /%s/ does not match", c.name, c.re)
		}
	}
}

func TestDockerfileLint(t *testing.T) {
	lint := testenv.Tool(t, "PHASE_TEST_DOCKERFILELINT", "dockerfilelint")
	root := kit.Root(t)
	cmd := exec.Command(lint, "-c", "deploy/docker", "Dockerfile")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Issues: None found") {
		t.Fatalf("dockerfilelint: %v\n%s", err, out)
	}
}

// TestBuildahImage builds the Dockerfile's final stage with buildah around a
// binary built here: every COPY --from=build is served from a context that
// holds the same paths (the binary, the host's CA bundle), so the image
// comes from the Dockerfile's own instructions. Inside this sandbox buildah
// needs --storage-driver vfs and --isolation chroot (no overlayfs, no new
// namespaces).
func TestBuildahImage(t *testing.T) {
	buildah := testenv.Tool(t, "PHASE_TEST_BUILDAH", "buildah")
	dir := t.TempDir()
	ctx := filepath.Join(dir, "context")
	for _, d := range []string{"out", "etc/ssl/certs"} {
		if err := os.MkdirAll(filepath.Join(ctx, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	built := kit.BuildSidecar(t, dir)
	if err := os.Rename(built, filepath.Join(ctx, "out", "phase-sidecar")); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		testenv.Missing(t, "no CA bundle on the host (apt-get install ca-certificates): %v", err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "etc/ssl/certs/ca-certificates.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	final := finalStage(t, dockerfile(t))
	containerfile := regexp.MustCompile(`(?m)^COPY --from=build /`).ReplaceAllString(final, "COPY ")
	if strings.Contains(containerfile, "--from=") {
		t.Fatalf("the final stage copies from a stage other than build:\n%s", containerfile)
	}
	cf := filepath.Join(dir, "Containerfile")
	if err := os.WriteFile(cf, []byte(containerfile), 0o644); err != nil {
		t.Fatal(err)
	}

	b := func(args ...string) string {
		t.Helper()
		base := []string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}
		return strings.TrimSpace(kit.Run(t, buildah, append(base, args...)...))
	}
	const image = "localhost/phase-sidecar:deploytest"
	b("bud", "--isolation", "chroot", "-f", cf, "-t", image,
		"--build-arg", "VERSION="+kit.Version, "--build-arg", "REVISION=deploytest", ctx)

	ctr := b("from", image)
	out := b("run", "--isolation", "chroot", ctr, "--", "/phase-sidecar", "version")
	if !strings.Contains(out, kit.Version) {
		t.Errorf("phase-sidecar version in the image printed %q, want %s", out, kit.Version)
	}

	inspect := b("inspect", "--format",
		`{{.OCIv1.Config.User}}|{{.OCIv1.Config.Entrypoint}}|{{.OCIv1.Config.ExposedPorts}}|{{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}`, image)
	want := `65532:65532|[/phase-sidecar]|map[9102/tcp:{}]|` + kit.Version
	if inspect != want {
		t.Errorf("image config = %s, want %s", inspect, want)
	}
	b("rm", ctr)
}
