// Package systemd_test verifies the EC2 unit with systemd-analyze.
package systemd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/deploy/internal/kit"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

const (
	unitName   = "phase-sidecar.service"
	sidecarBin = "/usr/local/bin/phase-sidecar"
	appBin     = "/usr/local/bin/phase-app"
)

// unit returns the unit's directives as key -> values, in order.
func unit(t *testing.T, text string) map[string][]string {
	t.Helper()
	d := map[string][]string{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("line %q is not key=value", l)
		}
		d[k] = append(d[k], v)
	}
	return d
}

func TestUnitDirectives(t *testing.T) {
	b, err := os.ReadFile(unitName)
	if err != nil {
		t.Fatal(err)
	}
	d := unit(t, string(b))
	want := map[string]string{
		"RuntimeDirectory":      "phase-sidecar",
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"CapabilityBoundingSet": "",
		"AmbientCapabilities":   "",
		"User":                  "phase",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	// Supervise mode: the sidecar starts the app after "--".
	start := strings.Fields(strings.Join(d["ExecStart"], " "))
	i := slices.Index(start, "--")
	if len(start) < 2 || start[0] != sidecarBin || start[1] != "run" || i < 0 || i+1 >= len(start) || start[i+1] != appBin {
		t.Errorf("ExecStart=%v: want %s run … -- %s", start, sidecarBin, appBin)
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on the unit with its
// binaries pointed at a real build of the sidecar (verify checks that
// ExecStart is executable); any warning fails the test.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := testenv.Tool(t, "PHASE_TEST_SYSTEMD_ANALYZE", "systemd-analyze")
	dir := t.TempDir()
	bin := kit.BuildSidecar(t, dir)
	b, err := os.ReadFile(unitName)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(sidecarBin, bin, appBin, "/bin/true").Replace(string(b))

	tests := []struct {
		name    string
		text    string
		wantErr string // empty: verify must be clean
	}{
		{"unit", text, ""},
		// The check has teeth: a misspelt hardening directive is reported.
		{"typo", strings.Replace(text, "NoNewPrivileges=", "NoNewPrivilege=", 1), "Unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unitDir := filepath.Join(t.TempDir())
			path := filepath.Join(unitDir, unitName)
			kit.WriteFile(t, path, tt.text)
			out, err := exec.Command(sa, "verify", path).CombinedOutput()
			if tt.wantErr == "" {
				if err != nil || len(strings.TrimSpace(string(out))) > 0 {
					t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
				}
				return
			}
			if !strings.Contains(string(out), tt.wantErr) {
				t.Fatalf("systemd-analyze verify did not report %q: %v\n%s", tt.wantErr, err, out)
			}
		})
	}
}
