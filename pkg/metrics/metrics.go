// Package metrics defines every phase_sidecar_ collector, registered on a
// registry the caller passes in.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const ns = "phase_sidecar"

// Metrics holds the collectors. Label values come only from the config
// (secret names, source kinds) or from small fixed sets.
type Metrics struct {
	SecretInfo        *prometheus.GaugeVec   // secret, source, ref, file, required
	SecretLastSuccess *prometheus.GaugeVec   // secret, source
	SecretLastChange  *prometheus.GaugeVec   // secret, source
	SecretFetchErrors *prometheus.CounterVec // secret, source, reason
	SecretStale       *prometheus.GaugeVec   // secret, source
	SecretExpiry      *prometheus.GaugeVec   // secret, source
	SecretWriteErrors *prometheus.CounterVec // secret, source

	SourceRequests        *prometheus.CounterVec   // source, result
	SourceRequestDuration *prometheus.HistogramVec // source
	SourceUp              *prometheus.GaugeVec     // source
	CredentialExpiry      *prometheus.GaugeVec     // source: Vault token, AWS credentials
	SourceBreakerState    *prometheus.GaugeVec     // source: 0 closed, 1 open, 2 half-open

	Reloads             *prometheus.CounterVec   // method, result
	LastReloadSuccess   prometheus.Gauge         //
	ReloadDuration      *prometheus.HistogramVec // method
	ReloadPendingChange prometheus.Gauge         // secrets changed but not yet notified

	Ready     prometheus.Gauge
	BuildInfo *prometheus.GaugeVec // version, revision, goversion
}

// New creates the collectors and registers them, with the Go and process
// collectors, on reg.
func New(reg prometheus.Registerer, version, revision string) *Metrics {
	secretLabels := []string{"secret", "source"}
	m := &Metrics{
		SecretInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "secret_info",
			Help: "Constant 1 for each configured secret, with its ref and target file.",
		}, []string{"secret", "source", "ref", "file", "required"}),
		SecretLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "secret_last_success_timestamp_seconds",
			Help: "Unix time of the last successful sync of the secret (fetched, and on disk).",
		}, secretLabels),
		SecretLastChange: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "secret_last_change_timestamp_seconds",
			Help: "Unix time the secret's target file last changed.",
		}, secretLabels),
		SecretFetchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "secret_fetch_errors_total",
			Help: "Failed fetches of the secret, by reason.",
		}, []string{"secret", "source", "reason"}),
		SecretStale: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "secret_stale",
			Help: "1 when the secret has not synced successfully within its max_stale.",
		}, secretLabels),
		SecretExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "secret_expiry_timestamp_seconds",
			Help: "Unix time the secret's value expires (lease end, certificate NotAfter), where known.",
		}, secretLabels),
		SecretWriteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "secret_write_errors_total",
			Help: "Failed writes of the secret's target file.",
		}, secretLabels),
		SourceRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "source_requests_total",
			Help: "Requests to a source, by result.",
		}, []string{"source", "result"}),
		SourceRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "source_request_duration_seconds",
			Help:    "Duration of requests to a source.",
			Buckets: []float64{.0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"source"}),
		SourceUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "source_up",
			Help: "1 when the source answered its last request (a not-found or denied answer counts; a timeout, throttle or outage does not).",
		}, []string{"source"}),
		CredentialExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "source_credential_expiry_timestamp_seconds",
			Help: "Unix time the source's credentials (Vault token, AWS credentials) expire.",
		}, []string{"source"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "reloads_total",
			Help: "App reload notifications, by method and result.",
		}, []string{"method", "result"}),
		LastReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful reload notification.",
		}),
		ReloadDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "reload_duration_seconds",
			Help:    "Duration of reload notifications.",
			Buckets: []float64{.0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
		}, []string{"method"}),
		SourceBreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "source_breaker_state",
			Help: "State of the source's circuit breaker: 0 closed, 1 open (requests held back), 2 half-open (one probe in flight).",
		}, []string{"source"}),
		ReloadPendingChange: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "reload_pending_changes",
			Help: "Secrets changed on disk whose reload notification has not succeeded yet.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "ready",
			Help: "1 once every required secret has been written.",
		}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "build_info",
			Help: "Constant 1, labelled with the build's version, revision and Go version.",
		}, []string{"version", "revision", "goversion"}),
	}
	reg.MustRegister(
		m.SecretInfo, m.SecretLastSuccess, m.SecretLastChange, m.SecretFetchErrors,
		m.SecretStale, m.SecretExpiry, m.SecretWriteErrors,
		m.SourceRequests, m.SourceRequestDuration, m.SourceUp, m.CredentialExpiry, m.SourceBreakerState,
		m.Reloads, m.LastReloadSuccess, m.ReloadDuration, m.ReloadPendingChange,
		m.Ready, m.BuildInfo,
	)
	m.BuildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
	for _, method := range []string{"signal", "http", "exec", "supervise"} {
		for _, result := range []string{"success", "error"} {
			m.Reloads.WithLabelValues(method, result)
		}
	}
	return m
}

// Standard registers the Go runtime and process collectors on reg.
func Standard(reg prometheus.Registerer) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}
