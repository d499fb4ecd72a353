package injector

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// vaultConfig is a sidecar config for Phase's backend: Vault, signal reload.
const vaultConfig = `output:
  dir: /run/secrets
sources:
  vault:
    address: https://vault.example:8200
    ca_cert: /etc/vault-ca/ca.crt
    auth: {method: kubernetes, role: phase}
secrets:
  - name: SECRET_KEY
    ref: vault://secret/phase/console#secret_key
  - name: DATABASE_PASSWORD
    ref: vault://secret/phase/console#database_password
reload:
  signal: {name: SIGHUP, process: gunicorn}
`

// phaseChartConfig fits Phase's phase/phase chart: its containers read
// /etc/phase/secrets/NAME and set the NAME_FILE variables themselves.
const phaseChartConfig = `output:
  dir: /etc/phase/secrets
sources:
  vault:
    address: https://vault.example:8200
    auth: {method: kubernetes, role: phase}
secrets:
  - name: SECRET_KEY
    file: SECRET_KEY
    ref: vault://secret/phase/console#secret_key
  - name: DATABASE_PASSWORD
    file: DATABASE_PASSWORD
    ref: vault://secret/phase/console#database_password
reload:
  http: {url: "http://127.0.0.1:8000/reload"}
`

// fakeConfigMaps serves ConfigMaps from a map of "namespace/name".
type fakeConfigMaps map[string]map[string]string

func (f fakeConfigMaps) ConfigMap(_ context.Context, ns, name string) (map[string]string, error) {
	d, ok := f[ns+"/"+name]
	if !ok {
		return nil, ErrNotFound
	}
	return d, nil
}

func newTestInjector(t *testing.T, cms fakeConfigMaps, cfgYAML string, failOpen bool) (*Injector, *prometheus.Registry) {
	t.Helper()
	cfg, err := ParseConfig([]byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	in, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, Options{
		Image: "ghcr.io/phase-sidecar/phase-sidecar:test", ConfigMaps: cms, Config: cfg, FailOpen: failOpen,
	})
	if err != nil {
		t.Fatal(err)
	}
	return in, reg
}

// podYAML decodes a pod written as YAML.
func podYAML(t *testing.T, s string) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// apply applies a patch the way the API server does and returns the pod.
func apply(t *testing.T, pod *corev1.Pod, ops []Op) *corev1.Pod {
	t.Helper()
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("apply %s: %v", raw, err)
	}
	var res corev1.Pod
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

const backendPod = `metadata:
  name: backend
  labels: {app: backend}
  annotations:
    phase-sidecar.dev/inject: "true"
    phase-sidecar.dev/config: phase-sidecar
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 1000}
  initContainers:
    - name: wait-for-db
      image: postgres
  containers:
    - name: backend
      image: phasehq/backend
      env:
        - {name: EXTERNAL_MIGRATION, value: "true"}
      volumeMounts:
        - {name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
        - {name: vault-ca, mountPath: /etc/vault-ca, readOnly: true}
    - name: metrics-exporter
      image: exporter
  volumes:
    - name: kube-api-access
      projected: {sources: [{serviceAccountToken: {path: token}}]}
    - name: vault-ca
      configMap: {name: vault-ca}
`

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func envValue(c *corev1.Container, name string) (string, int) {
	n, v := 0, ""
	for _, e := range c.Env {
		if e.Name == name {
			n++
			v = e.Value
		}
	}
	return v, n
}

func hasMount(c *corev1.Container, vol, path string, ro bool) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == vol && m.MountPath == path && m.ReadOnly == ro
	})
}

func TestInjectAnnotatedPod(t *testing.T) {
	in, reg := newTestInjector(t, fakeConfigMaps{"apps/phase-sidecar": {ConfigKey: vaultConfig}}, "", false)
	pod := podYAML(t, backendPod)
	res, err := in.Mutate(context.Background(), "apps", pod)
	if err != nil {
		t.Fatal(err)
	}
	got := apply(t, pod, res.Patch)

	side := got.Spec.InitContainers[0]
	if side.Name != ContainerName || side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("first init container %q restartPolicy %v; want the native sidecar first", side.Name, side.RestartPolicy)
	}
	if got.Spec.InitContainers[1].Name != "wait-for-db" {
		t.Errorf("the app's init container moved: %v", containerNames(got))
	}
	if side.Image != "ghcr.io/phase-sidecar/phase-sidecar:test" || side.Args[0] != "run" || side.Args[2] != "/etc/phase-sidecar/phase-sidecar.yaml" {
		t.Errorf("image %q args %q", side.Image, side.Args)
	}
	if p := side.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.StrVal != MetricsPortName {
		t.Errorf("startupProbe %+v", p)
	}
	if len(side.Ports) != 1 || side.Ports[0].ContainerPort != 9102 || side.Ports[0].Name != MetricsPortName {
		t.Errorf("ports %+v", side.Ports)
	}
	if side.Resources.Requests.Memory().String() != "32Mi" || side.Resources.Requests.Cpu().String() != "10m" {
		t.Errorf("resources %+v", side.Resources)
	}
	sc := side.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("securityContext %+v", sc)
	}
	for _, m := range []struct {
		vol, path string
		ro        bool
	}{
		{SecretsVolume, "/run/secrets", false},
		{ConfigVolume, ConfigDir, true},
		{"kube-api-access", "/var/run/secrets/kubernetes.io/serviceaccount", true}, // kubernetes auth's token
		{"vault-ca", "/etc/vault-ca", true},                                        // ca_cert
	} {
		if !hasMount(&side, m.vol, m.path, m.ro) {
			t.Errorf("sidecar lacks mount %s at %s (ro %v): %+v", m.vol, m.path, m.ro, side.VolumeMounts)
		}
	}

	for _, name := range []string{"backend", "metrics-exporter"} {
		c := container(t, got.Spec.Containers, name)
		if !hasMount(c, SecretsVolume, "/run/secrets", true) {
			t.Errorf("%s: no read-only secrets mount: %+v", name, c.VolumeMounts)
		}
		if v, n := envValue(c, "SECRET_KEY_FILE"); v != "/run/secrets/secret_key" || n != 1 {
			t.Errorf("%s: SECRET_KEY_FILE=%q (%d times)", name, v, n)
		}
		if v, _ := envValue(c, "DATABASE_PASSWORD_FILE"); v != "/run/secrets/database_password" {
			t.Errorf("%s: DATABASE_PASSWORD_FILE=%q", name, v)
		}
	}
	if v, _ := envValue(container(t, got.Spec.Containers, "backend"), "EXTERNAL_MIGRATION"); v != "true" {
		t.Error("the app's own variables were lost")
	}
	if c := container(t, got.Spec.InitContainers, "wait-for-db"); len(c.Env) != 0 {
		t.Error("an init container not named in phase-sidecar.dev/containers got variables")
	}

	var secrets *corev1.Volume
	for i, v := range got.Spec.Volumes {
		if v.Name == SecretsVolume {
			secrets = &got.Spec.Volumes[i]
		}
	}
	if secrets == nil || secrets.EmptyDir == nil || secrets.EmptyDir.Medium != corev1.StorageMediumMemory || secrets.EmptyDir.SizeLimit.String() != "1Mi" {
		t.Errorf("secrets volume %+v", secrets)
	}
	if got.Spec.ShareProcessNamespace == nil || !*got.Spec.ShareProcessNamespace {
		t.Error("a signal reload needs shareProcessNamespace: true")
	}
	if got.Annotations[AnnotationStatus] != statusInjected || got.Labels[LabelInjected] != "true" || got.Labels["app"] != "backend" {
		t.Errorf("metadata %v %v", got.Annotations, got.Labels)
	}
	if n := testutil.ToFloat64(in.metrics.injections.WithLabelValues("success", "injected")); n != 1 {
		t.Errorf("injections{success,injected} = %v", n)
	}
	if _, err := testutil.GatherAndCount(reg); err != nil {
		t.Error(err)
	}

	// Reinvoked (reinvocationPolicy IfNeeded, or a second webhook): no change.
	again, err := in.Mutate(context.Background(), "apps", got)
	if err != nil || len(again.Patch) != 0 || again.Reason != reasonAlready {
		t.Fatalf("second pass: %v %v, want no patch", again, err)
	}
}

func TestInjectChoices(t *testing.T) {
	cms := fakeConfigMaps{"apps/phase-sidecar": {ConfigKey: vaultConfig}, "phase/phase-chart": {ConfigKey: phaseChartConfig}}
	policies := `policies:
  - name: phase-backend
    namespaces: [phase]
    selector: {matchLabels: {app: backend}}
    configMap: phase-chart
    containers: [backend]
    replaceVolume: phase-secrets
`
	t.Run("containers annotation", func(t *testing.T) {
		in, _ := newTestInjector(t, cms, "", false)
		pod := podYAML(t, backendPod)
		pod.Annotations[AnnotationContainers] = "backend, wait-for-db"
		res, err := in.Mutate(context.Background(), "apps", pod)
		if err != nil {
			t.Fatal(err)
		}
		got := apply(t, pod, res.Patch)
		if _, n := envValue(container(t, got.Spec.Containers, "metrics-exporter"), "SECRET_KEY_FILE"); n != 0 {
			t.Error("metrics-exporter is not named but got SECRET_KEY_FILE")
		}
		for _, c := range []*corev1.Container{container(t, got.Spec.Containers, "backend"), container(t, got.Spec.InitContainers, "wait-for-db")} {
			if _, n := envValue(c, "SECRET_KEY_FILE"); n != 1 || !hasMount(c, SecretsVolume, "/run/secrets", true) {
				t.Errorf("%s not wired: %+v %+v", c.Name, c.Env, c.VolumeMounts)
			}
		}
	})
	t.Run("variable already set", func(t *testing.T) {
		in, _ := newTestInjector(t, cms, "", false)
		pod := podYAML(t, backendPod)
		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "SECRET_KEY_FILE", Value: "/run/secrets/secret_key"})
		res, err := in.Mutate(context.Background(), "apps", pod)
		if err != nil {
			t.Fatal(err)
		}
		got := apply(t, pod, res.Patch)
		if _, n := envValue(container(t, got.Spec.Containers, "backend"), "SECRET_KEY_FILE"); n != 1 {
			t.Errorf("SECRET_KEY_FILE set %d times", n)
		}
	})
	t.Run("dollar in a file name", func(t *testing.T) {
		// The kubelet expands $(VAR) in an env value and reads $$ as $:
		// the path must reach the app as written.
		cfg := strings.Replace(vaultConfig, "  - name: SECRET_KEY\n", "  - name: SECRET_KEY\n    file: \"key$(HOME)$$x\"\n", 1)
		in, _ := newTestInjector(t, fakeConfigMaps{"apps/phase-sidecar": {ConfigKey: cfg}}, "", false)
		pod := podYAML(t, backendPod)
		res, err := in.Mutate(context.Background(), "apps", pod)
		if err != nil {
			t.Fatal(err)
		}
		got := apply(t, pod, res.Patch)
		if v, _ := envValue(container(t, got.Spec.Containers, "backend"), "SECRET_KEY_FILE"); v != "/run/secrets/key$$(HOME)$$$$x" {
			t.Errorf("SECRET_KEY_FILE=%q, want the path with each $ doubled", v)
		}
	})
	t.Run("own variable with an escaped dollar", func(t *testing.T) {
		// $$ is the kubelet's escape for $: the container's own value names
		// the file the sidecar writes, and is accepted as it is.
		cfg := strings.Replace(vaultConfig, "  - name: SECRET_KEY\n", "  - name: SECRET_KEY\n    file: \"key$x\"\n", 1)
		in, _ := newTestInjector(t, fakeConfigMaps{"apps/phase-sidecar": {ConfigKey: cfg}}, "", false)
		pod := podYAML(t, backendPod)
		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "SECRET_KEY_FILE", Value: "/run/secrets/key$$x"})
		res, err := in.Mutate(context.Background(), "apps", pod)
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		if v, n := envValue(container(t, apply(t, pod, res.Patch).Spec.Containers, "backend"), "SECRET_KEY_FILE"); n != 1 || v != "/run/secrets/key$$x" {
			t.Errorf("SECRET_KEY_FILE=%q (%d times), want the container's own value once", v, n)
		}
	})
	t.Run("variable set elsewhere warns", func(t *testing.T) {
		in, _ := newTestInjector(t, cms, "", false)
		pod := podYAML(t, backendPod)
		pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "SECRET_KEY_FILE", Value: "/etc/k8s-secret/key"})
		res, err := in.Mutate(context.Background(), "apps", pod)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "SECRET_KEY_FILE=/etc/k8s-secret/key") {
			t.Errorf("warnings %q", res.Warnings)
		}
	})
	t.Run("Phase chart by label policy", func(t *testing.T) {
		in, _ := newTestInjector(t, cms, policies, false)
		// The shape of phase/phase's backend pod: no annotations.
		pod := podYAML(t, `metadata:
  generateName: phase-backend-
  labels: {app: backend, app.kubernetes.io/name: phase}
spec:
  containers:
    - name: backend
      image: phasehq/backend
      env:
        - {name: SECRET_KEY_FILE, value: /etc/phase/secrets/SECRET_KEY}
        - {name: DATABASE_PASSWORD_FILE, value: /etc/phase/secrets/DATABASE_PASSWORD}
      volumeMounts:
        - {name: phase-secrets, mountPath: /etc/phase/secrets, readOnly: true}
        - {name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
  volumes:
    - name: phase-secrets
      projected: {sources: [{secret: {name: phase-secrets, optional: true, items: [{key: SECRET_KEY, path: SECRET_KEY}]}}]}
    - name: kube-api-access
      projected: {sources: [{serviceAccountToken: {path: token}}]}
`)
		res, err := in.Mutate(context.Background(), "phase", pod)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) != 0 {
			t.Errorf("warnings %q", res.Warnings)
		}
		got := apply(t, pod, res.Patch)
		backend := container(t, got.Spec.Containers, "backend")
		if len(backend.Env) != 2 || len(backend.VolumeMounts) != 2 {
			t.Errorf("the chart's container changed: %+v %+v", backend.Env, backend.VolumeMounts)
		}
		v := got.Spec.Volumes[0]
		if v.Name != "phase-secrets" || v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory || v.Projected != nil {
			t.Errorf("phase-secrets not swapped for the sidecar's tmpfs: %+v", v)
		}
		if side := got.Spec.InitContainers[0]; !hasMount(&side, "phase-secrets", "/etc/phase/secrets", false) {
			t.Errorf("sidecar mounts %+v", side.VolumeMounts)
		}
		if got.Spec.ShareProcessNamespace != nil {
			t.Error("shareProcessNamespace set for an HTTP reload")
		}
		// The same pod elsewhere: the policy is for namespace phase only.
		if res, err := in.Mutate(context.Background(), "other", pod); err != nil || len(res.Patch) != 0 {
			t.Errorf("namespace other: %v %v", res, err)
		}
		// Opted out.
		pod.Annotations = map[string]string{AnnotationInject: "false"}
		if res, err := in.Mutate(context.Background(), "phase", pod); err != nil || len(res.Patch) != 0 || res.Reason != reasonNotSelected {
			t.Errorf("opted out: %v %v", res, err)
		}
	})
	t.Run("not selected", func(t *testing.T) {
		in, _ := newTestInjector(t, cms, policies, false)
		pod := podYAML(t, "metadata: {name: x, labels: {app: frontend}}\nspec: {containers: [{name: c, image: i}]}\n")
		res, err := in.Mutate(context.Background(), "phase", pod)
		if err != nil || len(res.Patch) != 0 || res.Reason != reasonNotSelected {
			t.Errorf("%v %v", res, err)
		}
	})
	t.Run("job pod", func(t *testing.T) {
		in, _ := newTestInjector(t, cms, "", false)
		pod := podYAML(t, `metadata:
  name: migrate
  annotations: {phase-sidecar.dev/inject: "true", phase-sidecar.dev/config: phase-sidecar}
spec:
  restartPolicy: Never
  containers: [{name: migrate, image: phasehq/backend}]
`)
		res, err := in.Mutate(context.Background(), "apps", pod)
		if err != nil {
			t.Fatal(err)
		}
		got := apply(t, pod, res.Patch)
		if len(got.Spec.InitContainers) != 1 || *got.Spec.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("init containers %+v", got.Spec.InitContainers)
		}
	})
}

func TestRefusals(t *testing.T) {
	bad := "output:\n  dir: /run/secrets\nsecrets:\n  - name: X\n    ref: nope://x\n"
	cms := fakeConfigMaps{
		"apps/phase-sidecar": {ConfigKey: vaultConfig},
		"apps/bad":           {ConfigKey: bad},
		"apps/nokey":         {"other.yaml": vaultConfig},
		"apps/loopback":      {ConfigKey: strings.Replace(vaultConfig, "output:", "listen: 127.0.0.1:9102\noutput:", 1)},
	}
	for _, tc := range []struct {
		name   string
		edit   func(p *corev1.Pod)
		reason string
		want   []string // substrings of the message
	}{
		{"missing ConfigMap", func(p *corev1.Pod) { p.Annotations[AnnotationConfig] = "absent" },
			ReasonConfigMissing, []string{"ConfigMap apps/absent", "does not exist"}},
		{"invalid config", func(p *corev1.Pod) { p.Annotations[AnnotationConfig] = "bad" },
			ReasonConfigInvalid, []string{"ConfigMap apps/bad", "phase-sidecar.yaml:5:10:", "secrets[0].ref"}},
		{"no config key", func(p *corev1.Pod) { p.Annotations[AnnotationConfig] = "nokey" },
			ReasonConfigInvalid, []string{"ConfigMap apps/nokey has no key phase-sidecar.yaml"}},
		{"unknown inject value", func(p *corev1.Pod) { p.Annotations[AnnotationInject] = "yes" },
			ReasonBadAnnotation, []string{`phase-sidecar.dev/inject: "yes"`, `want "true" or "false"`}},
		{"unknown annotation", func(p *corev1.Pod) { p.Annotations["phase-sidecar.dev/contianers"] = "backend" },
			ReasonBadAnnotation, []string{`unknown annotation "phase-sidecar.dev/contianers"`}},
		{"unknown container", func(p *corev1.Pod) { p.Annotations[AnnotationContainers] = "backend,frontend" },
			ReasonBadAnnotation, []string{`no container "frontend"`, "backend, metrics-exporter"}},
		{"bad ConfigMap name", func(p *corev1.Pod) { p.Annotations[AnnotationConfig] = "Not_A_Name" },
			ReasonBadAnnotation, []string{"phase-sidecar.dev/config", "Not_A_Name"}},
		{"config without inject", func(p *corev1.Pod) { delete(p.Annotations, AnnotationInject) },
			ReasonBadAnnotation, []string{"phase-sidecar.dev/config is set but phase-sidecar.dev/inject is not"}},
		{"own phase-sidecar container", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ContainerName, Image: "x"})
		}, ReasonConflict, []string{`already has a container named "phase-sidecar"`}},
		{"output.dir collides", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "vault-ca", MountPath: "/run/secrets/"})
		}, ReasonConflict, []string{`container "backend" already mounts volume "vault-ca" at /run/secrets/`, "output.dir /run/secrets", "phase-sidecar.dev/replace-volume"}},
		{"mount inside output.dir", func(p *corev1.Pod) {
			p.Spec.Containers[1].VolumeMounts = append(p.Spec.Containers[1].VolumeMounts, corev1.VolumeMount{Name: "vault-ca", MountPath: "/run/secrets/ca"})
		}, ReasonConflict, []string{`container "metrics-exporter" already mounts`}},
		{"variable points at an unwritten file", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "SECRET_KEY_FILE", Value: "/run/secrets/SECRET_KEY"})
		}, ReasonConflict, []string{"SECRET_KEY_FILE=/run/secrets/SECRET_KEY", "/run/secrets/secret_key"}},
		{"shareProcessNamespace false", func(p *corev1.Pod) { f := false; p.Spec.ShareProcessNamespace = &f },
			ReasonConflict, []string{"shareProcessNamespace: false"}},
		{"replace-volume absent", func(p *corev1.Pod) { p.Annotations[AnnotationReplaceVolume] = "nope" },
			ReasonConflict, []string{`volume "nope", which the pod does not have`}},
		{"replace-volume mounted elsewhere", func(p *corev1.Pod) { p.Annotations[AnnotationReplaceVolume] = "vault-ca" },
			ReasonConflict, []string{`mounts volume "vault-ca" at /etc/vault-ca`, "set output.dir to /etc/vault-ca"}},
		{"port taken", func(p *corev1.Pod) {
			p.Spec.Containers[1].Ports = []corev1.ContainerPort{{ContainerPort: 9102}}
		}, ReasonConflict, []string{`container "metrics-exporter" already uses port 9102`}},
		{"loopback listen", func(p *corev1.Pod) { p.Annotations[AnnotationConfig] = "loopback" },
			ReasonConflict, []string{`listens on "127.0.0.1:9102" only`}},
		{"foreign status", func(p *corev1.Pod) { p.Annotations[AnnotationStatus] = "done" },
			ReasonBadAnnotation, []string{"phase-sidecar.dev/status"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, failOpen := range []bool{false, true} {
				in, _ := newTestInjector(t, cms, "", failOpen)
				pod := podYAML(t, backendPod)
				tc.edit(pod)
				res, err := in.Mutate(context.Background(), "apps", pod)
				msg := ""
				if failOpen {
					if err != nil || len(res.Patch) != 0 || len(res.Warnings) != 1 {
						t.Fatalf("fail open: %v, %v, warnings %q; want admitted unchanged with one warning", res, err, res.Warnings)
					}
					msg = res.Warnings[0]
					if strings.Contains(msg, "\n") {
						t.Errorf("warning %q has a newline: the API server would drop it", msg)
					}
				} else {
					var r *Refusal
					if !errors.As(err, &r) || len(res.Patch) != 0 {
						t.Fatalf("got %v, %v; want a refusal", res, err)
					}
					if r.Reason != tc.reason {
						t.Errorf("reason %q, want %q (%s)", r.Reason, tc.reason, r.Msg)
					}
					msg = r.Msg
				}
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("message %q lacks %q", msg, w)
					}
				}
				if n := testutil.ToFloat64(in.metrics.injections.WithLabelValues("error", tc.reason)); n != 1 {
					t.Errorf("injections{error,%s} = %v", tc.reason, n)
				}
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"defaults", "", ""},
		{"unknown field", "policies:\n  - name: a\n    selectr: {}\n", `unknown field "selectr"`},
		{"empty selector", "policies:\n  - {name: a, configMap: c, selector: {}}\n", "must not be empty"},
		{"bad configMap", "policies:\n  - {name: a, configMap: C_C, selector: {matchLabels: {app: x}}}\n", `configMap "C_C"`},
		{"twice", "policies:\n  - {name: a, configMap: c, selector: {matchLabels: {app: x}}}\n  - {name: a, configMap: c, selector: {matchLabels: {app: y}}}\n", "used twice"},
		{"bad operator", "policies:\n  - {name: a, configMap: c, selector: {matchExpressions: [{key: app, operator: Like}]}}\n", "selector"},
		{"pull policy", "sidecar: {imagePullPolicy: Sometimes}\n", "imagePullPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.yaml))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Sidecar.ImagePullPolicy != corev1.PullIfNotPresent || c.Sidecar.SecretsSizeLimit.String() != "1Mi" || c.Sidecar.Resources.Limits.Memory().String() != "64Mi" {
					t.Errorf("defaults %+v", c.Sidecar)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// TestPatchKeepsUnknownFields: the patch adds at computed paths only, so a
// field this build's k8s.io/api does not know survives.
func TestPatchKeepsUnknownFields(t *testing.T) {
	in, _ := newTestInjector(t, fakeConfigMaps{"apps/phase-sidecar": {ConfigKey: vaultConfig}}, "", false)
	doc := []byte(`{"metadata":{"name":"p","annotations":{"phase-sidecar.dev/inject":"true","phase-sidecar.dev/config":"phase-sidecar"}},
"spec":{"futureField":{"a":1},"containers":[{"name":"c","image":"i","futureContainerField":true}]}}`)
	var pod corev1.Pod
	if err := json.Unmarshal(doc, &pod); err != nil {
		t.Fatal(err)
	}
	res, err := in.Mutate(context.Background(), "apps", &pod)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(res.Patch)
	p, err := jsonpatch.DecodePatch(raw)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"futureField":{"a":1}`, `"futureContainerField":true`, `"name":"phase-sidecar"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("patched pod lacks %s:\n%s", want, out)
		}
	}
}
