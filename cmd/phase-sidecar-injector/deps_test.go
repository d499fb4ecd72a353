package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSidecarWithoutKubernetesLibraries: client-go and friends are this
// binary's weight only; the sidecar (whose idle RSS is measured) must not
// link any k8s.io package, nor the injector's.
func TestSidecarWithoutKubernetesLibraries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/phase-sidecar/phase-sidecar/cmd/phase-sidecar").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "sigs.k8s.io/") || strings.HasSuffix(p, "/pkg/injector") {
			t.Errorf("cmd/phase-sidecar depends on %s", p)
		}
	}
	if !strings.Contains(string(out), "github.com/phase-sidecar/phase-sidecar/pkg/config") {
		t.Fatalf("go list printed no sidecar packages:\n%s", out)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{}, "--tls-cert-file and --tls-key-file are required"},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k", "--failure-policy", "Maybe"}, `--failure-policy "Maybe"`},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k", "--sidecar-image", ""}, "--sidecar-image"},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k", "extra"}, "takes no arguments"},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k"}, ""},
	} {
		f, err := parseFlags(tc.args, &strings.Builder{})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.err == "" && (f.listen != ":8443" || f.image != DefaultImage || f.failurePolicy != "Fail"):
			t.Errorf("defaults %+v", f)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: %v, want %q", tc.args, err, tc.err)
		}
	}
}
