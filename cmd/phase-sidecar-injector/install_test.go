package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/phase-sidecar/phase-sidecar/pkg/injector"
	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

const (
	releaseNS = "phase-sidecar"
	release   = "psi"
	fullname  = "psi-phase-sidecar-injector"
	crdDir    = "../../deploy/kubernetes/testdata/prometheus-operator"
)

// sidecarConfig is the sidecar config of the annotated pods: Vault with
// Kubernetes auth, a signal reload (so shareProcessNamespace is set).
const sidecarConfig = `output:
  dir: /run/secrets
sources:
  vault:
    address: https://vault.example:8200
    auth: {method: kubernetes, role: phase}
secrets:
  - name: SECRET_KEY
    ref: vault://secret/phase/console#secret_key
  - name: DATABASE_PASSWORD
    ref: vault://secret/phase/console#database_password
reload:
  signal: {name: SIGHUP, process: gunicorn}
`

// phaseBackendConfig fits the pods of Phase's phase/phase chart, which
// read /etc/phase/secrets/NAME through variables they set themselves.
const phaseBackendConfig = `output:
  dir: /etc/phase/secrets
sources:
  vault:
    address: https://vault.example:8200
    auth: {method: kubernetes, role: phase}
secrets:
  - {name: SECRET_KEY, file: SECRET_KEY, ref: "vault://secret/phase/console#secret_key"}
  - {name: DATABASE_PASSWORD, file: DATABASE_PASSWORD, ref: "vault://secret/phase/console#database_password"}
reload:
  signal: {name: SIGHUP, process: gunicorn}
`

// invalidConfig has an error at 6:10 (the ref's scheme).
const invalidConfig = `output:
  dir: /run/secrets
sources: {}
secrets:
  - name: SECRET_KEY
    ref: nope://secret/phase
`

// injectorProc is the injector run by the test at the URL the chart's
// webhook points to.
type injectorProc struct {
	cancel context.CancelFunc
	done   chan int
	log    *testenv.Buffer
}

func startInjector(t *testing.T, args ...string) *injectorProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &injectorProc{cancel: cancel, done: make(chan int, 1), log: &testenv.Buffer{}}
	ready := make(chan net.Addr, 1)
	go func() { p.done <- run(ctx, args, p.log, ready) }()
	select {
	case <-ready:
	case code := <-p.done:
		t.Fatalf("the injector exited %d:\n%s", code, p.log)
	case <-time.After(time.Minute):
		t.Fatalf("the injector did not start:\n%s", p.log)
	}
	t.Cleanup(p.stop)
	return p
}

func (p *injectorProc) stop() {
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
	}
}

// TestInstallOnAPIServer installs the chart with helm onto a real
// kube-apiserver, runs the injector in this process at the chart's
// webhook.url with the chart's own certificate, config and ServiceAccount,
// and creates pods that the API server sends to it.
func TestInstallOnAPIServer(t *testing.T) {
	testenv.Tool(t, "PHASE_TEST_HELM", "helm")
	k := servers.Kube(t, t.TempDir())
	ctx := t.Context()
	for _, ns := range []string{releaseNS, "apps", "phase"} {
		k.Namespace(t, ns)
	}
	monitoring := installCRDs(t, k)

	port := testenv.FreePort(t)
	values := fmt.Sprintf(`webhook:
  url: https://127.0.0.1:%[1]d/mutate
  timeoutSeconds: 5
certificates:
  generated: {ipAddresses: [127.0.0.1]}
policies:
  - name: phase-backend
    namespaces: [phase]
    selector: {matchLabels: {app: backend}}
    configMap: phase-sidecar-backend
    containers: [backend]
    replaceVolume: phase-secrets
podMonitor: {enabled: %[2]v}
prometheusRule: {enabled: %[2]v}
`, port, monitoring)
	if out, err := helm(t, "install", release, chartDir, "--namespace", releaseNS, "--kubeconfig", k.Kubeconfig, "-f", writeValues(t, values)); err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}

	// What the chart made: the serving pair, the injector config, and the
	// ServiceAccount whose RBAC (get ConfigMaps) the injector runs with.
	dir := t.TempDir()
	var secret corev1.Secret
	if err := k.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+releaseNS+"/secrets/"+fullname+"-tls", nil, &secret); err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := k.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+releaseNS+"/configmaps/"+fullname, nil, &cm); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := write("tls.crt", secret.Data["tls.crt"]), write("tls.key", secret.Data["tls.key"])
	configFile := write("injector.yaml", []byte(cm.Data["injector.yaml"]))
	token := k.ServiceAccountToken(t, releaseNS, fullname, servers.TokenOptions{})
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := k.WriteKubeconfig(kubeconfig, token); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--kubeconfig", kubeconfig, "--config", configFile, "--sidecar-image", "ghcr.io/phase-sidecar/phase-sidecar:test",
		"--log-format", "text",
	}
	inj := startInjector(t, args...)
	defer func() {
		if t.Failed() {
			t.Logf("injector log:\n%s", inj.log)
		}
	}()

	for ns, cms := range map[string]map[string]string{
		"apps":  {"phase-sidecar": sidecarConfig, "invalid": invalidConfig},
		"phase": {"phase-sidecar-backend": phaseBackendConfig},
	} {
		for name, data := range cms {
			obj := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": name}, "data": map[string]string{injector.ConfigKey: data}}
			if err := k.Do(ctx, http.MethodPost, "/api/v1/namespaces/"+ns+"/configmaps", obj, nil); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("annotated pod", func(t *testing.T) {
		pod, _ := createPod(t, k, "apps", annotatedPod("backend", ""), false)
		side := pod.Spec.InitContainers[0]
		if side.Name != injector.ContainerName || side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("init containers %+v", pod.Spec.InitContainers)
		}
		if side.StartupProbe == nil || side.StartupProbe.HTTPGet.Path != "/readyz" || side.Resources.Requests.Memory().IsZero() || !*side.SecurityContext.RunAsNonRoot {
			t.Errorf("sidecar %+v", side)
		}
		app := pod.Spec.Containers[0]
		if v := env(app, "SECRET_KEY_FILE"); v != "/run/secrets/secret_key" {
			t.Errorf("SECRET_KEY_FILE=%q", v)
		}
		if pod.Spec.ShareProcessNamespace == nil || !*pod.Spec.ShareProcessNamespace {
			t.Error("no shareProcessNamespace for a signal reload")
		}
		if v := volume(pod, injector.SecretsVolume); v == nil || v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("secrets volume %+v", v)
		}
		// The service-account token that the API server mounted in the app
		// before the webhook ran: the sidecar logs in to Vault with it.
		if !mounts(side, "/var/run/secrets/kubernetes.io/serviceaccount") {
			t.Errorf("the sidecar lacks the service-account token: %+v", side.VolumeMounts)
		}

		// The same pod again, as stored (a copy of an injected pod, or a
		// second pass): nothing is added twice.
		again := map[string]any{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "backend-copy", "annotations": pod.Annotations, "labels": pod.Labels},
			"spec":     pod.Spec}
		raw, _ := json.Marshal(again)
		copyPod, _ := createPod(t, k, "apps", string(raw), false)
		if n := len(copyPod.Spec.InitContainers); n != 1 || len(copyPod.Spec.Volumes) != len(pod.Spec.Volumes) || len(copyPod.Spec.Containers[0].Env) != len(app.Env) {
			t.Errorf("reinjected: %d init containers, %d volumes", n, len(copyPod.Spec.Volumes))
		}
	})

	t.Run("dry run", func(t *testing.T) {
		pod, _ := createPod(t, k, "apps", annotatedPod("dry", ""), true)
		if len(pod.Spec.InitContainers) != 1 {
			t.Errorf("a dry-run create was not mutated: %+v", pod.Spec.InitContainers)
		}
	})

	t.Run("job pod", func(t *testing.T) {
		pod, _ := createPod(t, k, "apps", strings.Replace(annotatedPod("migrate", ""), "spec:\n", "spec:\n  restartPolicy: Never\n", 1), false)
		if pod.Spec.RestartPolicy != corev1.RestartPolicyNever || *pod.Spec.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("restartPolicy %v, sidecar %v", pod.Spec.RestartPolicy, pod.Spec.InitContainers[0].RestartPolicy)
		}
	})

	t.Run("Phase chart pod by label", func(t *testing.T) {
		pod, warnings := createPod(t, k, "phase", phaseChartPod, false)
		if len(warnings) != 0 {
			t.Errorf("warnings %q", warnings)
		}
		v := volume(pod, "phase-secrets")
		if v == nil || v.EmptyDir == nil || v.Projected != nil {
			t.Errorf("phase-secrets not replaced by the sidecar's tmpfs: %+v", v)
		}
		backend := pod.Spec.Containers[0]
		if env(backend, "SECRET_KEY_FILE") != "/etc/phase/secrets/SECRET_KEY" || len(backend.Env) != 2 {
			t.Errorf("the chart's variables changed: %+v", backend.Env)
		}
		if pod.Spec.InitContainers[0].Name != injector.ContainerName || pod.Labels[injector.LabelInjected] != "true" {
			t.Errorf("not injected: %v", containerNamesOf(pod))
		}
	})

	t.Run("not selected", func(t *testing.T) {
		pod, _ := createPod(t, k, "apps", "apiVersion: v1\nkind: Pod\nmetadata: {name: plain}\nspec:\n  containers: [{name: app, image: app}]\n", false)
		if len(pod.Spec.InitContainers) != 0 || pod.Annotations[injector.AnnotationStatus] != "" {
			t.Errorf("an unselected pod was changed: %v", containerNamesOf(pod))
		}
	})

	refusals := []struct {
		name, pod string
		want      []string
	}{
		{"missing ConfigMap", annotatedPod("r1", "absent"), []string{"ConfigMap apps/absent", "does not exist"}},
		{"invalid config", annotatedPod("r2", "invalid"), []string{"ConfigMap apps/invalid", "phase-sidecar.yaml:6:10", "secrets[0].ref"}},
		{"output.dir collides", strings.Replace(annotatedPod("r3", ""), "      image: phasehq/backend\n",
			"      image: phasehq/backend\n      volumeMounts: [{name: data, mountPath: /run/secrets}]\n", 1) + "  volumes: [{name: data, emptyDir: {}}]\n",
			[]string{`container "backend" already mounts volume "data" at /run/secrets`}},
		{"unknown annotation value", strings.Replace(annotatedPod("r4", ""), `inject: "true"`, `inject: "yes"`, 1),
			[]string{`phase-sidecar.dev/inject: "yes"`}},
		{"own phase-sidecar container", annotatedPod("r5", "") + "    - {name: phase-sidecar, image: mine}\n",
			[]string{`already has a container named "phase-sidecar"`}},
	}
	for _, tc := range refusals {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			_, err := k.Apply(ctx, []byte(tc.pod), servers.ApplyOptions{Namespace: "apps"})
			if err == nil {
				t.Fatal("admitted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\nlacks %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), `admission webhook "inject.phase-sidecar.dev" denied the request`) {
				t.Errorf("not the webhook's refusal: %v", err)
			}
		})
	}

	metrics := scrape(t, port, secret.Data["ca.crt"])
	for _, want := range []string{
		`phase_sidecar_injector_injections_total{reason="config_missing",result="error"} 1`,
		`phase_sidecar_injector_injections_total{reason="config_invalid",result="error"} 1`,
		`phase_sidecar_injector_injections_total{reason="conflict",result="error"} 2`,
		`phase_sidecar_injector_injections_total{reason="bad_annotation",result="error"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// failurePolicy Ignore: the upgrade keeps the generated pair, and a
	// pod with a bad ConfigMap is admitted unchanged, with a warning.
	inj.stop()
	if out, err := helm(t, "upgrade", release, chartDir, "--namespace", releaseNS, "--kubeconfig", k.Kubeconfig, "--reuse-values", "--set", "failurePolicy=Ignore"); err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, out)
	}
	var after corev1.Secret
	if err := k.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+releaseNS+"/secrets/"+fullname+"-tls", nil, &after); err != nil {
		t.Fatal(err)
	}
	if string(after.Data["ca.crt"]) != string(secret.Data["ca.crt"]) || string(after.Data["tls.crt"]) != string(secret.Data["tls.crt"]) {
		t.Error("helm upgrade replaced the generated certificate")
	}
	inj = startInjector(t, append(args, "--failure-policy", "Ignore")...)
	pod, warnings := createPod(t, k, "apps", annotatedPod("ignored", "invalid"), false)
	if len(pod.Spec.InitContainers) != 0 {
		t.Errorf("a pod with an invalid config was mutated: %v", containerNamesOf(pod))
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "ConfigMap apps/invalid") || !strings.Contains(warnings[0], "6:10") {
		t.Errorf("warnings %q", warnings)
	}
}

// installCRDs installs the Prometheus Operator's CRDs that the chart's
// PodMonitor and PrometheusRule need, from the copies the manifest tests
// keep; without them the install leaves those two out (helm template and
// promtool still check them).
func installCRDs(t *testing.T, k *servers.KubeServer) bool {
	t.Helper()
	for _, f := range []string{"monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		data, err := os.ReadFile(filepath.Join(crdDir, f))
		if err != nil {
			t.Logf("no Prometheus Operator CRDs (%v): installing without podMonitor and prometheusRule", err)
			return false
		}
		if _, err := k.ApplyAll(t.Context(), data, servers.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		k.WaitCRD(t, strings.TrimSuffix(strings.TrimPrefix(f, "monitoring.coreos.com_"), ".yaml")+".monitoring.coreos.com")
	}
	return true
}

func annotatedPod(name, configMap string) string {
	if configMap == "" {
		configMap = "phase-sidecar"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  annotations:
    phase-sidecar.dev/inject: "true"
    phase-sidecar.dev/config: %s
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 1000}
  containers:
    - name: backend
      image: phasehq/backend
`, name, configMap)
}

// phaseChartPod is the shape of phase/phase's backend pod: labels, no
// annotations, its own NAME_FILE variables and secrets volume.
const phaseChartPod = `apiVersion: v1
kind: Pod
metadata:
  name: phase-backend
  labels: {app: backend, app.kubernetes.io/name: phase}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 1000}
  containers:
    - name: backend
      image: phasehq/backend
      env:
        - {name: SECRET_KEY_FILE, value: /etc/phase/secrets/SECRET_KEY}
        - {name: DATABASE_PASSWORD_FILE, value: /etc/phase/secrets/DATABASE_PASSWORD}
      volumeMounts:
        - {name: phase-secrets, mountPath: /etc/phase/secrets, readOnly: true}
  volumes:
    - name: phase-secrets
      projected:
        sources:
          - secret: {name: phase-secrets, optional: true, items: [{key: SECRET_KEY, path: SECRET_KEY}]}
`

// createPod creates a pod by server-side apply and returns it as stored,
// with the server's warnings.
func createPod(t *testing.T, k *servers.KubeServer, ns, manifest string, dryRun bool) (*corev1.Pod, []string) {
	t.Helper()
	a, err := k.Apply(t.Context(), []byte(manifest), servers.ApplyOptions{Namespace: ns, DryRun: dryRun})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(a.Object)
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod, a.Warnings
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func volume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

func mounts(c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

func containerNamesOf(pod *corev1.Pod) []string {
	var names []string
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		names = append(names, c.Name)
	}
	return names
}

// scrape reads the injector's /metrics over its HTTPS listener.
func scrape(t *testing.T, port int, caPEM []byte) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
