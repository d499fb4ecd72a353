package injector

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Config is the injector's own file (--config): the sidecar's resources and
// the label policies. Every field has a default; no file means defaults and
// no policies.
type Config struct {
	Sidecar  Sidecar  `json:"sidecar"`
	Policies []Policy `json:"policies"`
}

// Sidecar shapes the injected container and its volume.
type Sidecar struct {
	Resources        corev1.ResourceRequirements `json:"resources"`
	ImagePullPolicy  corev1.PullPolicy           `json:"imagePullPolicy"`
	SecretsSizeLimit *resource.Quantity          `json:"secretsSizeLimit"` // of the medium: Memory emptyDir
}

// Policy selects pods by label without annotations, for charts that offer
// no way to annotate their pods (Phase's phase/phase). The first policy
// that matches a pod applies; the pod's own annotations override its
// fields, and phase-sidecar.dev/inject: "false" opts a pod out.
type Policy struct {
	Name       string                `json:"name"`
	Namespaces []string              `json:"namespaces"` // empty: every namespace the webhook is called for
	Selector   *metav1.LabelSelector `json:"selector"`
	// ConfigMap, in the pod's namespace, whose key phase-sidecar.yaml is
	// the sidecar config.
	ConfigMap     string   `json:"configMap"`
	Containers    []string `json:"containers"`    // empty: every container
	ReplaceVolume string   `json:"replaceVolume"` // see AnnotationReplaceVolume

	selector labels.Selector
}

// Defaults of Sidecar.
var (
	DefaultResources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	DefaultSecretsSizeLimit = resource.MustParse("1Mi")
)

// LoadConfig reads the injector config at path; "" gives the defaults.
func LoadConfig(path string) (*Config, error) {
	if path == "" {
		return ParseConfig(nil)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("injector config: read %q: %w", path, err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("injector config %q: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes the injector config strictly (unknown fields are
// errors), applies defaults and validates every policy.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, err
	}
	if c.Sidecar.Resources.Requests == nil && c.Sidecar.Resources.Limits == nil {
		c.Sidecar.Resources = *DefaultResources.DeepCopy()
	}
	switch c.Sidecar.ImagePullPolicy {
	case "":
		c.Sidecar.ImagePullPolicy = corev1.PullIfNotPresent
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, fmt.Errorf("sidecar.imagePullPolicy %q: want Always, IfNotPresent or Never", c.Sidecar.ImagePullPolicy)
	}
	if c.Sidecar.SecretsSizeLimit == nil {
		q := DefaultSecretsSizeLimit.DeepCopy()
		c.Sidecar.SecretsSizeLimit = &q
	}
	var errs []error
	seen := map[string]bool{}
	for i := range c.Policies {
		p := &c.Policies[i]
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("policies[%d]: name %q is used twice", i, p.Name))
		}
		seen[p.Name] = true
		if err := p.validate(); err != nil {
			errs = append(errs, fmt.Errorf("policies[%d] (%s): %w", i, p.Name, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

func (p *Policy) validate() error {
	var errs []string
	if p.Name == "" {
		errs = append(errs, "name is required")
	}
	if p.Selector == nil || (len(p.Selector.MatchLabels) == 0 && len(p.Selector.MatchExpressions) == 0) {
		errs = append(errs, "selector is required and must not be empty (an empty selector selects every pod)")
	} else if sel, err := metav1.LabelSelectorAsSelector(p.Selector); err != nil {
		errs = append(errs, "selector: "+err.Error())
	} else {
		p.selector = sel
	}
	if msg := checkName("configMap", p.ConfigMap, validation.IsDNS1123Subdomain); msg != "" {
		errs = append(errs, msg)
	}
	for _, ns := range p.Namespaces {
		if msg := checkName("namespaces", ns, validation.IsDNS1123Label); msg != "" {
			errs = append(errs, msg)
		}
	}
	for _, c := range p.Containers {
		if msg := checkName("containers", c, validation.IsDNS1123Label); msg != "" {
			errs = append(errs, msg)
		}
	}
	if p.ReplaceVolume != "" {
		if msg := checkName("replaceVolume", p.ReplaceVolume, validation.IsDNS1123Label); msg != "" {
			errs = append(errs, msg)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// checkName words a Kubernetes name check's failures, or returns "".
func checkName(field, value string, check func(string) []string) string {
	if value == "" {
		return field + " is required"
	}
	if problems := check(value); len(problems) > 0 {
		return fmt.Sprintf("%s %q: %s", field, value, strings.Join(problems, "; "))
	}
	return ""
}

// match returns the first policy that selects a pod in namespace with
// podLabels, or nil.
func (c *Config) match(namespace string, podLabels map[string]string) *Policy {
	for i := range c.Policies {
		p := &c.Policies[i]
		if len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, namespace) {
			continue
		}
		if p.selector.Matches(labels.Set(podLabels)) {
			return p
		}
	}
	return nil
}
