package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/injector"
)

// yamlBlocks returns the ```yaml blocks of a docs page.
func yamlBlocks(t *testing.T, page string) []string {
	t.Helper()
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	for line := range strings.SplitSeq(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```yaml":
			cur = &strings.Builder{}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, dedent(cur.String()))
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("no ```yaml blocks in %s", page)
	}
	return blocks
}

// dedent removes the indentation of a block inside a list item.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if n := len(l) - len(strings.TrimLeft(l, " ")); indent < 0 || n < indent {
			indent = n
		}
	}
	for i, l := range lines {
		if len(l) >= indent {
			lines[i] = l[indent:]
		}
	}
	return strings.Join(lines, "\n")
}

// docConfigMaps decodes the ConfigMaps of the blocks and checks that each
// sidecar config in them is valid.
func docConfigMaps(t *testing.T, page string, blocks []string) map[string]string {
	t.Helper()
	cms := map[string]string{}
	for _, b := range blocks {
		r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(doc, &cm); err != nil || cm.Kind != "ConfigMap" {
				continue
			}
			text, ok := cm.Data[injector.ConfigKey]
			if !ok {
				t.Errorf("%s: ConfigMap %s has no key %s", page, cm.Name, injector.ConfigKey)
				continue
			}
			if _, err := config.Parse(fmt.Sprintf("%s: ConfigMap %s", page, cm.Name), []byte(text)); err != nil {
				t.Errorf("%s: %v", page, err)
			}
			cms[cm.Namespace+"/"+cm.Name] = text
		}
	}
	return cms
}

func TestDocsKubernetes(t *testing.T) {
	const page = "../../docs/kubernetes.md"
	blocks := yamlBlocks(t, page)
	if len(docConfigMaps(t, page, blocks)) == 0 {
		t.Errorf("%s shows no ConfigMap", page)
	}
	for _, b := range blocks {
		if strings.HasPrefix(b, "policies:") {
			if _, err := injector.ParseConfig([]byte(b)); err != nil {
				t.Errorf("%s: policies example: %v", page, err)
			}
		}
	}
}

// phaseChartPodOf renders a pod the way Phase's phase/phase chart does for
// one container kind (with serviceAccount.create: true).
func phaseChartPodOf(kind string, secrets []string) *corev1.Pod {
	c := corev1.Container{Name: kind, Image: "phasehq/" + kind, VolumeMounts: []corev1.VolumeMount{
		{Name: "phase-secrets", MountPath: "/etc/phase/secrets", ReadOnly: true},
		{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
	}}
	var sources []corev1.VolumeProjection
	for _, s := range secrets {
		c.Env = append(c.Env, corev1.EnvVar{Name: s + "_FILE", Value: "/etc/phase/secrets/" + s})
		opt := true
		sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: "phase-console-secret"}, Optional: &opt,
			Items: []corev1.KeyToPath{{Key: s, Path: s}},
		}})
	}
	uid := int64(1000)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "phase-" + kind + "-",
			Labels:       map[string]string{"app": kind, "app.kubernetes.io/name": "phase", "app.kubernetes.io/instance": "phase"},
		},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid},
			InitContainers:  []corev1.Container{{Name: "wait-for-migrations", Image: "postgres"}},
			Containers:      []corev1.Container{c},
			Volumes: []corev1.Volume{
				{Name: "phase-secrets", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}},
				{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
			},
		},
	}
}

// TestDocsPhaseHelm: the ConfigMaps and the policies of docs/phase-helm.md
// inject the pods of Phase's chart without a warning and without touching
// the chart's own variables and mounts.
func TestDocsPhaseHelm(t *testing.T) {
	const page = "../../docs/phase-helm.md"
	blocks := yamlBlocks(t, page)
	cms := docConfigMaps(t, page, blocks)
	var values string
	for _, b := range blocks {
		if strings.HasPrefix(b, "# phase-sidecar-injector values") {
			values = strings.ReplaceAll(b, "RELEASE", "phase")
		}
	}
	if values == "" {
		t.Fatalf("%s shows no injector values", page)
	}
	cfg, err := injector.ParseConfig([]byte(values))
	if err != nil {
		t.Fatalf("%s: injector values: %v", page, err)
	}

	reader := fakeReader{}
	for k, v := range cms {
		reader[k] = map[string]string{injector.ConfigKey: v}
	}
	inj, err := injector.New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), injector.Options{
		Image: DefaultImage, ConfigMaps: reader, Config: cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	for kind, secrets := range map[string][]string{
		"backend":  {"SECRET_KEY", "SERVER_SECRET", "DATABASE_PASSWORD", "REDIS_PASSWORD", "SMTP_PASSWORD", "GOOGLE_CLIENT_SECRET"},
		"worker":   {"SECRET_KEY", "SERVER_SECRET", "DATABASE_PASSWORD", "REDIS_PASSWORD", "SMTP_PASSWORD"},
		"frontend": {"GOOGLE_CLIENT_SECRET", "GITHUB_CLIENT_SECRET"},
	} {
		pod := phaseChartPodOf(kind, secrets)
		res, err := inj.Mutate(context.Background(), "phase", pod)
		if err != nil {
			t.Errorf("%s: %v", kind, err)
			continue
		}
		if len(res.Patch) == 0 || len(res.Warnings) != 0 {
			t.Errorf("%s: %d ops, warnings %q", kind, len(res.Patch), res.Warnings)
		}
		for _, op := range res.Patch {
			if strings.HasPrefix(op.Path, "/spec/containers/") {
				t.Errorf("%s: the chart's container changed: %s %s", kind, op.Op, op.Path)
			}
		}
	}

	// The injector config as the chart renders it from these values.
	docs := render(t, values)
	var rendered corev1.ConfigMap
	docs.one(t, "ConfigMap", &rendered)
	if _, err := injector.ParseConfig([]byte(rendered.Data["injector.yaml"])); err != nil {
		t.Errorf("the chart's injector config from %s: %v", page, err)
	}
}

type fakeReader map[string]map[string]string

func (f fakeReader) ConfigMap(_ context.Context, ns, name string) (map[string]string, error) {
	if d, ok := f[ns+"/"+name]; ok {
		return d, nil
	}
	return nil, injector.ErrNotFound
}
