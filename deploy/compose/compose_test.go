// Package compose_test loads compose.yaml with the Compose Specification's
// reference loader and checks it against the sidecar's config and the
// Phase catalogue.
package compose_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/phase-sidecar/phase-sidecar/deploy/internal/kit"
	"github.com/phase-sidecar/phase-sidecar/deploy/phase"
	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"go.yaml.in/yaml/v3"
)

const sidecar = "phase-sidecar"

func load(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."),
		cli.WithEnv([]string{"NEXTAUTH_SECRET=compose-test-placeholder"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml does not load under the Compose Specification: %v", err)
	}
	return p
}

func sidecarConfig(t *testing.T) *config.Config {
	t.Helper()
	b, err := os.ReadFile("phase-sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("phase-sidecar.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLoadsStrictly(t *testing.T) {
	load(t)
	// An unknown key must fail: the loader is strict, so the test means
	// something.
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bad := strings.Replace(string(b), "    restart: unless-stopped\n", "    restart: unless-stopped\n    restartt: always\n", 1)
	if err := os.WriteFile(dir+"/compose.yaml", []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{dir + "/compose.yaml"}, cli.WithWorkingDirectory(dir),
		cli.WithEnv([]string{"NEXTAUTH_SECRET=x"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opts.LoadProject(context.Background()); err == nil {
		t.Fatal("a misspelt key loaded without error")
	}
}

func TestWiring(t *testing.T) {
	p := load(t)
	cfg := sidecarConfig(t)
	cat, err := phase.Load("../phase/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := p.Services[sidecar]
	if !ok {
		t.Fatalf("no %s service", sidecar)
	}

	// The sidecar runs the bound config, from an image without a shell.
	i := slices.Index(sc.Command, "--config")
	if len(sc.Command) == 0 || sc.Command[0] != "run" || i < 0 {
		t.Fatalf("sidecar command %v: want run --config …", sc.Command)
	}
	cfgMount := mountAt(sc, sc.Command[i+1])
	if cfgMount == nil || cfgMount.Type != types.VolumeTypeBind || !strings.HasSuffix(cfgMount.Source, "/phase-sidecar.yaml") || !cfgMount.ReadOnly {
		t.Errorf("--config %s is not ./phase-sidecar.yaml bound read-only", sc.Command[i+1])
	}
	if sc.HealthCheck == nil || len(sc.HealthCheck.Test) < 2 || sc.HealthCheck.Test[0] != "CMD" || sc.HealthCheck.Test[1] != "/phase-sidecar" {
		t.Errorf("the healthcheck must call the binary in exec form (no shell in the image): %+v", sc.HealthCheck)
	}
	if !sc.ReadOnly || !slices.Contains(sc.CapDrop, "ALL") {
		t.Errorf("the sidecar should be read_only with cap_drop ALL")
	}

	// The shared volume is a tmpfs, mounted at output.dir everywhere.
	secrets := mountAt(sc, cfg.Output.Dir)
	if secrets == nil || secrets.Type != types.VolumeTypeVolume || secrets.Target != cfg.Output.Dir || secrets.ReadOnly {
		t.Fatalf("the sidecar does not mount a named volume read-write at output.dir %s", cfg.Output.Dir)
	}
	vol := p.Volumes[secrets.Source]
	if vol.DriverOpts["type"] != "tmpfs" || vol.DriverOpts["device"] != "tmpfs" || !strings.Contains(vol.DriverOpts["o"], "size=") {
		t.Errorf("volume %s must be a sized tmpfs, got %v", secrets.Source, vol.DriverOpts)
	}

	wantFiles := map[string]string{}
	for _, s := range cfg.Secrets {
		wantFiles[cfg.EnvName(s)] = cfg.TargetPath(s)
	}
	for _, name := range phase.Containers {
		t.Run(name, func(t *testing.T) {
			svc, ok := p.Services[name]
			if !ok {
				t.Fatalf("no %s service", name)
			}
			if d, ok := svc.DependsOn[sidecar]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s must depend on %s being healthy", name, sidecar)
			}
			m := mountAt(svc, cfg.Output.Dir)
			if m == nil || m.Source != secrets.Source || m.Target != cfg.Output.Dir || !m.ReadOnly {
				t.Errorf("%s must mount %s read-only at %s", name, secrets.Source, cfg.Output.Dir)
			}
			// Exactly the config's secrets that the catalogue gives this
			// container, each at the path the sidecar writes.
			want := map[string]string{}
			for _, s := range cfg.Secrets {
				v, ok := cat.Variable(s.Name)
				if !ok {
					t.Fatalf("config secret %s is not in the catalogue", s.Name)
				}
				if slices.Contains(v.Containers, name) {
					want[cfg.EnvName(s)] = cfg.TargetPath(s)
				}
			}
			got := map[string]string{}
			for k, v := range svc.Environment {
				if strings.HasSuffix(k, "_FILE") && v != nil {
					got[k] = *v
				}
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s=%q, the sidecar writes %q", k, got[k], v)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("%s: %s is not a catalogue secret of %s in the config", name, k, name)
				}
			}
			for _, pl := range cat.Plain {
				if slices.Contains(pl.Containers, name) {
					if _, ok := svc.Environment[pl.Name]; !ok {
						t.Errorf("%s needs the plain variable %s", name, pl.Name)
					}
				}
			}
		})
	}

	// A signal reload reaches gunicorn only from the same PID namespace.
	// The backend joins the sidecar's (not the other way round: the sidecar
	// must start first, so it cannot wait for the backend's namespace).
	if cfg.Reload.Signal != nil {
		if got := p.Services["backend"].Pid; got != "service:"+sidecar {
			t.Errorf("backend pid = %q, want service:%s for the signal reload", got, sidecar)
		}
		if sc.User == "" || strings.HasPrefix(sc.User, "0") {
			t.Errorf("the sidecar must run as the backend's (non-root) uid to signal it, user=%q", sc.User)
		}
	}

	// The postgres image reads the same password file.
	pg := p.Services["postgres"]
	if v := pg.Environment["POSTGRES_PASSWORD_FILE"]; v == nil || *v != wantFiles["DATABASE_PASSWORD_FILE"] {
		t.Errorf("postgres POSTGRES_PASSWORD_FILE = %v, want %s", v, wantFiles["DATABASE_PASSWORD_FILE"])
	}
}

// TestEnvGenerated checks the backend's NAME_FILE entries against
// `phase-sidecar env --format compose`.
func TestEnvGenerated(t *testing.T) {
	bin := kit.BuildSidecar(t, t.TempDir())
	out, err := exec.Command(bin, "env", "--format", "compose", "--config", "phase-sidecar.yaml").Output()
	if err != nil {
		t.Fatalf("phase-sidecar env: %v", err)
	}
	var gen struct {
		Environment map[string]string `yaml:"environment"`
	}
	if err := kit.DecodeStrict(out, &gen); err != nil {
		t.Fatalf("env --format compose: %v\n%s", err, out)
	}
	p := load(t)
	cat, err := phase.Load("../phase/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, v := range p.Services["backend"].Environment {
		if strings.HasSuffix(k, "_FILE") {
			got[k] = *v
		}
	}
	want := map[string]string{}
	for k, v := range gen.Environment {
		if vr, ok := cat.Variable(strings.TrimSuffix(k, "_FILE")); ok && slices.Contains(vr.Containers, "backend") {
			want[k] = v
		}
	}
	a, _ := yaml.Marshal(got)
	b, _ := yaml.Marshal(want)
	if string(a) != string(b) {
		t.Errorf("backend env:\n%s\nenv --format compose (backend's share):\n%s", a, b)
	}
}

// mountAt returns the mount of svc whose target contains path.
func mountAt(svc types.ServiceConfig, path string) *types.ServiceVolumeConfig {
	for i, v := range svc.Volumes {
		if path == v.Target || strings.HasPrefix(path, strings.TrimSuffix(v.Target, "/")+"/") {
			return &svc.Volumes[i]
		}
	}
	return nil
}

// TestHealthcheck runs the sidecar's compose healthcheck command against a
// real sidecar: it must fail before the sidecar is ready and pass after.
// The image has no shell or curl, so the binary itself has to check
// /readyz, with the config that names its listen address.
func TestHealthcheck(t *testing.T) {
	p := load(t)
	test := p.Services[sidecar].HealthCheck.Test
	dir := t.TempDir()
	bin := kit.BuildSidecar(t, dir)
	out := kit.TmpfsDir(t)
	src := dir + "/db-password"
	kit.WriteFile(t, src, "placeholder\n")
	cfg := kit.FileSecretConfig(t, dir, out, testenv.Addr(t), src, "")

	check := func() (string, error) {
		args := slices.Clone(test[2:])
		if i := slices.Index(args, "--config"); i >= 0 {
			args[i+1] = cfg
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PHASE_SIDECAR_CONFIG="+cfg)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	outBefore, err := check()
	if strings.Contains(outBefore, "unknown command") {
		t.Fatalf("the compose healthcheck runs %v, which this binary does not have:\n%s", test[1:], outBefore)
	}
	if err == nil {
		t.Fatalf("healthcheck passed with no sidecar running:\n%s", outBefore)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kit.Start(t, ctx, bin, "run", "--config", cfg)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		out, err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("healthcheck never passed against a running sidecar: %v\n%s", err, out)
		case <-tick.C:
		}
	}
}
