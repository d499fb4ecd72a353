package injector

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The pod annotations users write, and the marks the injector leaves.
const (
	AnnotationInject     = "phase-sidecar.dev/inject"     // "true" or "false"
	AnnotationConfig     = "phase-sidecar.dev/config"     // ConfigMap name in the pod's namespace
	AnnotationContainers = "phase-sidecar.dev/containers" // comma-separated; default every container
	// AnnotationReplaceVolume names a volume of the pod that the sidecar's
	// in-memory volume takes the place of, under the same name: its mounts
	// (which must be at output.dir) then show the sidecar's files. For
	// charts that mount their own secrets volume and set the NAME_FILE
	// variables themselves (Phase's phase/phase: phase-secrets).
	AnnotationReplaceVolume = "phase-sidecar.dev/replace-volume"
	AnnotationStatus        = "phase-sidecar.dev/status" // "injected", set by the injector
	LabelInjected           = "phase-sidecar.dev/injected"

	annotationPrefix = "phase-sidecar.dev/"
	statusInjected   = "injected"
)

// Names in the mutated pod.
const (
	ContainerName     = "phase-sidecar"
	ConfigKey         = "phase-sidecar.yaml" // the ConfigMap key holding the sidecar config
	ConfigVolume      = "phase-sidecar-config"
	SecretsVolume     = "phase-sidecar-secrets"
	ConfigDir         = "/etc/phase-sidecar"
	MetricsPortName   = "phase-metrics"
	injectAnnotations = "phase-sidecar.dev/inject: \"true\" and phase-sidecar.dev/config: CONFIGMAP"
)

// userAnnotations are the annotations a pod may carry for the injector.
var userAnnotations = []string{AnnotationInject, AnnotationConfig, AnnotationContainers, AnnotationReplaceVolume}

// Reasons of a refusal (the reason label of the injections metric).
const (
	ReasonBadAnnotation = "bad_annotation"
	ReasonConfigMissing = "config_missing"
	ReasonConfigInvalid = "config_invalid"
	ReasonConflict      = "conflict"
	ReasonAPIError      = "api_error"
	ReasonBadRequest    = "bad_request"
)

// Refusal is why a pod cannot get the sidecar, worded for whoever created
// the pod (the API server shows it to them); Reason is for metrics.
type Refusal struct {
	Reason string
	Msg    string
}

func (r *Refusal) Error() string { return r.Msg }

func refuse(reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// selection is what a pod asked for, from its annotations over the first
// matching policy.
type selection struct {
	policy        string // "" when selected by annotation only
	configMap     string
	configFrom    string   // what named the ConfigMap, for messages
	containers    []string // empty: every container
	replaceVolume string
}

// selectPod decides whether a pod gets the sidecar, and with what. It
// returns nil, nil for a pod that is not selected. already reports a pod
// that the injector has mutated before (a reinvocation): it is left as is.
func (c *Config) selectPod(namespace string, pod *corev1.Pod) (sel *selection, already bool, err error) {
	ann := pod.Annotations
	for k := range ann {
		if strings.HasPrefix(k, annotationPrefix) && k != AnnotationStatus && !slices.Contains(userAnnotations, k) {
			return nil, false, refuse(ReasonBadAnnotation, "unknown annotation %q; phase-sidecar knows %s", k, strings.Join(userAnnotations, ", "))
		}
	}
	if st, ok := ann[AnnotationStatus]; ok {
		if st != statusInjected {
			return nil, false, refuse(ReasonBadAnnotation, "annotation %s: %q is not a value phase-sidecar sets (it writes %q)", AnnotationStatus, st, statusInjected)
		}
		if hasContainer(pod, ContainerName) {
			return nil, true, nil
		}
	}
	inject, set := ann[AnnotationInject]
	switch {
	case !set:
	case inject == "false":
		return nil, false, nil
	case inject != "true":
		return nil, false, refuse(ReasonBadAnnotation, "annotation %s: %q; want \"true\" or \"false\"", AnnotationInject, inject)
	}
	p := c.match(namespace, pod.Labels)
	if !set && p == nil {
		for _, k := range []string{AnnotationConfig, AnnotationContainers, AnnotationReplaceVolume} {
			if _, ok := ann[k]; ok {
				return nil, false, refuse(ReasonBadAnnotation, "annotation %s is set but %s is not \"true\" and no injector policy selects the pod; want %s", k, AnnotationInject, injectAnnotations)
			}
		}
		return nil, false, nil
	}
	sel = &selection{}
	if p != nil {
		sel = &selection{policy: p.Name, configMap: p.ConfigMap, containers: p.Containers, replaceVolume: p.ReplaceVolume,
			configFrom: fmt.Sprintf("injector policy %q", p.Name)}
	}
	if v, ok := ann[AnnotationConfig]; ok {
		if msg := checkName(AnnotationConfig, v, validation.IsDNS1123Subdomain); msg != "" {
			return nil, false, refuse(ReasonBadAnnotation, "annotation %s: want the name of a ConfigMap in namespace %s", msg, namespace)
		}
		sel.configMap, sel.configFrom = v, "annotation "+AnnotationConfig
	}
	if sel.configMap == "" {
		return nil, false, refuse(ReasonBadAnnotation, "annotation %s is \"true\" but %s names no ConfigMap; want %s", AnnotationInject, AnnotationConfig, injectAnnotations)
	}
	if v, ok := ann[AnnotationContainers]; ok {
		names, err := containerList(pod, v)
		if err != nil {
			return nil, false, err
		}
		sel.containers = names
	}
	if v, ok := ann[AnnotationReplaceVolume]; ok {
		if msg := checkName(AnnotationReplaceVolume, v, validation.IsDNS1123Label); msg != "" {
			return nil, false, refuse(ReasonBadAnnotation, "annotation %s: want the name of one of the pod's volumes", msg)
		}
		sel.replaceVolume = v
	}
	return sel, false, nil
}

// containerList parses phase-sidecar.dev/containers: names of the pod's
// containers (or init containers), separated by commas.
func containerList(pod *corev1.Pod, v string) ([]string, error) {
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			return nil, refuse(ReasonBadAnnotation, "annotation %s: %q has an empty name; want container names separated by commas", AnnotationContainers, v)
		}
		if n == ContainerName {
			return nil, refuse(ReasonBadAnnotation, "annotation %s: %q names the sidecar itself", AnnotationContainers, v)
		}
		if !hasContainer(pod, n) {
			return nil, refuse(ReasonBadAnnotation, "annotation %s: the pod has no container %q (it has %s)", AnnotationContainers, n, strings.Join(containerNames(pod), ", "))
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

func hasContainer(pod *corev1.Pod, name string) bool {
	return slices.Contains(containerNames(pod), name)
}

func containerNames(pod *corev1.Pod) []string {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}
