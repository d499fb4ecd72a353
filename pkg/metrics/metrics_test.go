package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNew registers every collector on the registry it is given (none on
// the default one), with names the contract fixes, and lints clean.
func TestNew(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, "1.2.3", "abc")
	m.SecretInfo.WithLabelValues("A", "vault", "vault://s/a#b", "a", "true").Set(1)
	m.SecretLastSuccess.WithLabelValues("A", "vault").Set(1)
	m.SecretLastChange.WithLabelValues("A", "vault").Set(1)
	m.SecretFetchErrors.WithLabelValues("A", "vault", "unavailable").Inc()
	m.SecretStale.WithLabelValues("A", "vault").Set(0)
	m.SecretExpiry.WithLabelValues("A", "vault").Set(1)
	m.SourceRequests.WithLabelValues("vault", "success").Inc()
	m.SourceRequestDuration.WithLabelValues("vault").Observe(0.1)
	m.SourceUp.WithLabelValues("vault").Set(1)
	m.SourceBreakerState.WithLabelValues("vault").Set(0)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, name := range []string{
		"phase_sidecar_secret_info", "phase_sidecar_secret_last_success_timestamp_seconds",
		"phase_sidecar_secret_last_change_timestamp_seconds", "phase_sidecar_secret_fetch_errors_total",
		"phase_sidecar_secret_stale", "phase_sidecar_secret_expiry_timestamp_seconds",
		"phase_sidecar_source_requests_total", "phase_sidecar_source_request_duration_seconds",
		"phase_sidecar_source_up", "phase_sidecar_source_breaker_state",
		"phase_sidecar_reloads_total", "phase_sidecar_last_reload_success_timestamp_seconds",
		"phase_sidecar_build_info",
	} {
		if !have[name] {
			t.Errorf("%s is not exported", name)
		}
	}
	if n, err := testutil.GatherAndCount(prometheus.DefaultGatherer, "phase_sidecar_build_info"); err != nil || n != 0 {
		t.Errorf("the default registry holds %d phase_sidecar series (%v)", n, err)
	}
	for name := range have {
		if strings.HasPrefix(name, "phase_sidecar_") && strings.HasSuffix(name, "_count") {
			t.Errorf("%s: counters end in _total", name)
		}
	}
}
