// Package injector is the Kubernetes mutating admission webhook that adds
// phase-sidecar to pods: it reads a pod's annotations (or the first label
// policy that selects it), loads the sidecar config from the named
// ConfigMap, and answers with a JSON patch that adds the native sidecar,
// its volumes and the app's NAME_FILE variables, or with a refusal that
// says what to fix. Only the phase-sidecar-injector binary imports it.
package injector

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
)

// ConfigMaps reads ConfigMaps: the one thing the injector asks of the API
// server.
type ConfigMaps interface {
	// ConfigMap returns the data of a ConfigMap, or an error wrapping
	// ErrNotFound when it does not exist.
	ConfigMap(ctx context.Context, namespace, name string) (map[string]string, error)
}

// ErrNotFound marks a ConfigMap that does not exist.
var ErrNotFound = errors.New("not found")

// Options configure an Injector.
type Options struct {
	Image      string // the sidecar's image
	ConfigMaps ConfigMaps
	Config     *Config // nil: defaults, no policies
	// FailOpen admits a pod unchanged (with a warning) when it cannot get
	// the sidecar, instead of refusing it: the webhook's failurePolicy
	// Ignore. The API server applies failurePolicy only when the webhook
	// cannot be called; refusals are the webhook's own to make.
	FailOpen bool
}

// Injector decides and builds the mutation of each pod.
type Injector struct {
	logger  *slog.Logger
	o       Options
	metrics *metrics
}

// New returns an Injector whose metrics are registered on reg.
func New(logger *slog.Logger, reg prometheus.Registerer, o Options) (*Injector, error) {
	if o.Image == "" {
		return nil, errors.New("injector: no sidecar image")
	}
	if o.ConfigMaps == nil {
		return nil, errors.New("injector: no ConfigMaps reader")
	}
	if o.Config == nil {
		c, err := ParseConfig(nil)
		if err != nil {
			return nil, err
		}
		o.Config = c
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Injector{logger: logger.With("component", "injector"), o: o, metrics: m}, nil
}

// Result is the answer for one pod.
type Result struct {
	Patch    []Op     // empty: admit unchanged
	Warnings []string // shown to whoever created the pod
	Reason   string   // the injections metric's reason
}

// Mutate returns the patch for a pod being created in namespace, or a
// *Refusal (or, with FailOpen, a Result without patch whose warning says
// why).
func (in *Injector) Mutate(ctx context.Context, namespace string, pod *corev1.Pod) (Result, error) {
	start := time.Now()
	res, err := in.mutate(ctx, namespace, pod)
	result := "success"
	if err != nil {
		result = "error"
		var r *Refusal
		if !errors.As(err, &r) {
			r = refuse(ReasonAPIError, "%v", err)
			err = r
		}
		res.Reason = r.Reason
		in.logger.Warn("pod not injected", "namespace", namespace, "pod", podName(pod), "reason", r.Reason, "err", r.Msg, "admitted", in.o.FailOpen)
		if in.o.FailOpen {
			// A warning is one header line: the API server drops any with
			// a newline in it.
			res.Warnings = append(res.Warnings, "phase-sidecar: the pod was admitted without the sidecar (failurePolicy Ignore): "+strings.ReplaceAll(r.Msg, "\n", "; "))
			err = nil
		}
	} else if res.Reason == reasonInjected {
		in.logger.Info("pod injected", "namespace", namespace, "pod", podName(pod), "ops", len(res.Patch))
	}
	in.metrics.injections.WithLabelValues(result, res.Reason).Inc()
	in.metrics.duration.Observe(time.Since(start).Seconds())
	return res, err
}

// Reasons of the injections metric for pods admitted as asked.
const (
	reasonInjected    = "injected"
	reasonAlready     = "already_injected"
	reasonNotSelected = "not_selected"
)

func (in *Injector) mutate(ctx context.Context, namespace string, pod *corev1.Pod) (Result, error) {
	sel, already, err := in.o.Config.selectPod(namespace, pod)
	switch {
	case err != nil:
		return Result{}, err
	case already:
		return Result{Reason: reasonAlready}, nil
	case sel == nil:
		return Result{Reason: reasonNotSelected}, nil
	}
	cfg, err := in.sidecarConfig(ctx, namespace, sel)
	if err != nil {
		return Result{}, err
	}
	m := &mutation{
		pod: pod, sel: sel, cfg: cfg, side: in.o.Config.Sidecar, image: in.o.Image,
		cmName: namespace + "/" + sel.configMap,
	}
	p, warnings, err := m.build()
	if err != nil {
		return Result{}, err
	}
	return Result{Patch: p, Warnings: warnings, Reason: reasonInjected}, nil
}

// sidecarConfig loads and validates the sidecar config of a ConfigMap, so
// a pod whose sidecar could not start is refused now, with the config's
// own error and its line:column.
func (in *Injector) sidecarConfig(ctx context.Context, namespace string, sel *selection) (*config.Config, error) {
	name := sel.configMap
	data, err := in.o.ConfigMaps.ConfigMap(ctx, namespace, name)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, refuse(ReasonConfigMissing, "ConfigMap %s/%s (%s) does not exist; create it with the sidecar config under key %s", namespace, name, sel.configFrom, ConfigKey)
	case err != nil:
		return nil, refuse(ReasonAPIError, "read ConfigMap %s/%s: %v", namespace, name, err)
	}
	text, ok := data[ConfigKey]
	if !ok {
		return nil, refuse(ReasonConfigInvalid, "ConfigMap %s/%s has no key %s, which holds the sidecar config", namespace, name, ConfigKey)
	}
	cfg, err := config.Parse(ConfigKey, []byte(text))
	if err != nil {
		return nil, refuse(ReasonConfigInvalid, "ConfigMap %s/%s holds an invalid sidecar config:\n%v", namespace, name, err)
	}
	return cfg, nil
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName
}
