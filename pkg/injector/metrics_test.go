package injector

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// TestMetricsExposition: the injector's exposition passes promtool check
// metrics, and the series the alerts use exist before the first pod.
func TestMetricsExposition(t *testing.T) {
	in, reg := newTestInjector(t, fakeConfigMaps{"apps/phase-sidecar": {ConfigKey: vaultConfig}}, "", false)
	dir := t.TempDir()
	writePair(t, filepath.Join(dir, "c"), filepath.Join(dir, "k"), "injector")
	if _, err := NewCerts(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, filepath.Join(dir, "c"), filepath.Join(dir, "k"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Mutate(context.Background(), "apps", podYAML(t, backendPod)); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`phase_sidecar_injector_injections_total{reason="injected",result="success"} 1`,
		`phase_sidecar_injector_injections_total{reason="config_invalid",result="error"} 0`,
		`phase_sidecar_injector_certificate_expiry_timestamp_seconds `,
		`phase_sidecar_injector_certificate_reloads_total{result="error"} 0`,
		`phase_sidecar_injector_admission_duration_seconds_count 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	promtool := testenv.Tool(t, "PHASE_TEST_PROMTOOL", "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(w.Body.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
