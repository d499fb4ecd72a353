package injector

import "github.com/prometheus/client_golang/prometheus"

// metrics are the injector's own collectors, on the registry passed in.
type metrics struct {
	injections *prometheus.CounterVec
	duration   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phase_sidecar_injector_injections_total",
			Help: "Pod admissions by result (success, error) and reason: injected, already_injected, not_selected; bad_annotation, config_missing, config_invalid, conflict, api_error, bad_request.",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "phase_sidecar_injector_admission_duration_seconds",
			Help:    "Time to answer one pod admission, the ConfigMap read included.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	// Every series an alert looks at exists from the start.
	for _, r := range []string{reasonInjected, reasonAlready, reasonNotSelected} {
		m.injections.WithLabelValues("success", r)
	}
	for _, r := range []string{ReasonBadAnnotation, ReasonConfigMissing, ReasonConfigInvalid, ReasonConflict, ReasonAPIError, ReasonBadRequest} {
		m.injections.WithLabelValues("error", r)
	}
	for _, c := range []prometheus.Collector{m.injections, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
