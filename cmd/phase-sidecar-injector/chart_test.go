package main

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/phase-sidecar/phase-sidecar/pkg/injector"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

const chartDir = "../../deploy/helm/phase-sidecar-injector"

// helm runs the helm of PHASE_TEST_HELM (test/tools/helm.sh) with a home
// of its own.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testenv.Tool(t, "PHASE_TEST_HELM", "helm")
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// fullValues turns on every optional part of the chart.
const fullValues = `policies:
  - name: phase-backend
    namespaces: [phase]
    selector: {matchLabels: {app: backend}}
    configMap: phase-sidecar-backend
    containers: [backend]
    replaceVolume: phase-secrets
podMonitor: {enabled: true}
prometheusRule: {enabled: true}
`

func writeValues(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChartLint(t *testing.T) {
	for name, values := range map[string]string{
		"defaults":     "",
		"everything":   fullValues,
		"cert-manager": "certificates: {certManager: {enabled: true}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, "lint", "--strict", chartDir, "-f", writeValues(t, values))
			if err != nil || !strings.Contains(out, "0 chart(s) failed") || strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
		})
	}
}

// rendered is helm template's output, by kind.
type rendered map[string][][]byte

func render(t *testing.T, values string, extra ...string) rendered {
	t.Helper()
	args := append([]string{"template", "psi", chartDir, "--namespace", "phase-sidecar", "-f", writeValues(t, values)}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	docs := rendered{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind != "" {
			docs[meta.Kind] = append(docs[meta.Kind], doc)
		}
	}
}

// one decodes the only object of a kind strictly into out.
func (r rendered) one(t *testing.T, kind string, out any) {
	t.Helper()
	if len(r[kind]) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(r[kind]), kind)
	}
	if err := yaml.UnmarshalStrict(r[kind][0], out); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}

func TestChartTemplate(t *testing.T) {
	docs := render(t, fullValues)
	var dep appsv1.Deployment
	docs.one(t, "Deployment", &dep)
	c := dep.Spec.Template.Spec.Containers[0]
	for _, flag := range []string{"--listen=:8443", "--tls-cert-file=", "--tls-key-file=", "--sidecar-image=ghcr.io/phase-sidecar/phase-sidecar:", "--failure-policy=Fail", "--config="} {
		if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, flag) }) {
			t.Errorf("injector args %q lack %s", c.Args, flag)
		}
	}
	if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--kubeconfig") }) {
		t.Error("in a cluster the injector uses its service account, not --kubeconfig")
	}
	if sc := c.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation {
		t.Errorf("injector securityContext %+v", sc)
	}

	var role rbacv1.ClusterRole
	docs.one(t, "ClusterRole", &role)
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"configmaps"}) || !slices.Equal(role.Rules[0].Verbs, []string{"get"}) {
		t.Errorf("RBAC %+v: want get on configmaps only", role.Rules)
	}
	var binding rbacv1.ClusterRoleBinding
	docs.one(t, "ClusterRoleBinding", &binding)
	if binding.RoleRef.Name != role.Name || binding.Subjects[0].Name != dep.Spec.Template.Spec.ServiceAccountName {
		t.Errorf("binding %+v", binding)
	}

	var cm corev1.ConfigMap
	docs.one(t, "ConfigMap", &cm)
	cfg, err := injector.ParseConfig([]byte(cm.Data["injector.yaml"]))
	if err != nil {
		t.Fatalf("the injector would not start on the chart's config: %v\n%s", err, cm.Data["injector.yaml"])
	}
	if len(cfg.Policies) != 1 || cfg.Policies[0].ReplaceVolume != "phase-secrets" || cfg.Sidecar.Resources.Limits.Memory().String() != "64Mi" {
		t.Errorf("injector config %+v", cfg)
	}

	var svc corev1.Service
	docs.one(t, "Service", &svc)
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	docs.one(t, "MutatingWebhookConfiguration", &mwc)
	w := mwc.Webhooks[0]
	if s := w.ClientConfig.Service; s == nil || s.Name != svc.Name || *s.Path != injector.Path || *s.Port != 443 {
		t.Errorf("clientConfig %+v", w.ClientConfig)
	}
	if r := w.Rules[0]; !slices.Equal(r.Resources, []string{"pods"}) || !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{"CREATE"}) {
		t.Errorf("rules %+v", w.Rules)
	}
	if *w.SideEffects != admissionregistrationv1.SideEffectClassNone || *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("sideEffects %v failurePolicy %v", *w.SideEffects, *w.FailurePolicy)
	}
	ex := w.NamespaceSelector.MatchExpressions[0]
	if ex.Key != "kubernetes.io/metadata.name" || !slices.Contains(ex.Values, "phase-sidecar") || !slices.Contains(ex.Values, "kube-system") {
		t.Errorf("namespaceSelector %+v: the release's own namespace and kube-system must be excluded", w.NamespaceSelector)
	}

	// The generated pair: the webhook trusts the CA that signed the
	// Service's certificate.
	var secret corev1.Secret
	docs.one(t, "Secret", &secret)
	if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
		t.Error("caBundle is not the generated CA")
	}
	verifyCert(t, secret.Data["tls.crt"], secret.Data["ca.crt"], svc.Name+".phase-sidecar.svc")

	if n := len(docs["PodMonitor"]); n != 2 {
		t.Errorf("%d PodMonitors, want the injector's and the sidecars'", n)
	}
	checkRules(t, docs)
}

func verifyCert(t *testing.T, certPEM, caPEM []byte, name string) {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("tls.crt is not PEM")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt is not PEM")
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
		t.Errorf("the serving certificate does not verify for %s: %v", name, err)
	}
}

// checkRules: the PrometheusRule carries every alert of
// deploy/prometheus/alerts.yml and the injector's, and promtool accepts
// the groups.
func checkRules(t *testing.T, docs rendered) {
	t.Helper()
	var rule struct {
		Spec struct {
			Groups []struct {
				Name  string           `json:"name"`
				Rules []map[string]any `json:"rules"`
			}
		}
	}
	if len(docs["PrometheusRule"]) != 1 {
		t.Fatalf("%d PrometheusRules", len(docs["PrometheusRule"]))
	}
	if err := yaml.Unmarshal(docs["PrometheusRule"][0], &rule); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r["alert"].(string))
		}
	}
	for _, f := range []string{"../../deploy/prometheus/alerts.yml", chartDir + "/files/injector-alerts.yml"} {
		var src struct {
			Groups []struct{ Rules []struct{ Alert string } }
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &src); err != nil {
			t.Fatal(err)
		}
		for _, g := range src.Groups {
			for _, r := range g.Rules {
				if !slices.Contains(alerts, r.Alert) {
					t.Errorf("the PrometheusRule lacks %s of %s", r.Alert, f)
				}
			}
		}
	}
	groups, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(p, groups, 0o600); err != nil {
		t.Fatal(err)
	}
	promtool := testenv.Tool(t, "PHASE_TEST_PROMTOOL", "promtool")
	if out, err := exec.Command(promtool, "check", "rules", p).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// TestChartAlertsInSync: the chart ships a copy of deploy/prometheus/alerts.yml
// (a chart cannot read files outside itself).
func TestChartAlertsInSync(t *testing.T) {
	want, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(chartDir + "/files/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("deploy/helm/phase-sidecar-injector/files/alerts.yml differs from deploy/prometheus/alerts.yml: cp deploy/prometheus/alerts.yml deploy/helm/phase-sidecar-injector/files/")
	}
}

func TestChartCertManager(t *testing.T) {
	docs := render(t, "certificates: {certManager: {enabled: true}}\n")
	if len(docs["Secret"]) != 0 {
		t.Error("a generated Secret besides cert-manager's")
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	docs.one(t, "MutatingWebhookConfiguration", &mwc)
	if got := mwc.Annotations["cert-manager.io/inject-ca-from"]; got != "phase-sidecar/psi-phase-sidecar-injector" {
		t.Errorf("inject-ca-from %q", got)
	}
	if len(mwc.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Error("a caBundle that cert-manager would fight over")
	}
	var cert struct {
		Spec struct {
			SecretName string
			DNSNames   []string
			IssuerRef  map[string]string
		}
	}
	if len(docs["Certificate"]) != 1 || len(docs["Issuer"]) != 1 {
		t.Fatalf("Certificate %d, Issuer %d", len(docs["Certificate"]), len(docs["Issuer"]))
	}
	if err := yaml.Unmarshal(docs["Certificate"][0], &cert); err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	docs.one(t, "Deployment", &dep)
	if cert.Spec.SecretName != dep.Spec.Template.Spec.Volumes[0].Secret.SecretName || !slices.Contains(cert.Spec.DNSNames, "psi-phase-sidecar-injector.phase-sidecar.svc") || cert.Spec.IssuerRef["kind"] != "Issuer" {
		t.Errorf("certificate %+v", cert.Spec)
	}

	// A given issuer: no Issuer of the chart's own.
	docs = render(t, "certificates: {certManager: {enabled: true, issuerRef: {name: corp, kind: ClusterIssuer}}}\n")
	if len(docs["Issuer"]) != 0 || !strings.Contains(string(docs["Certificate"][0]), "ClusterIssuer") {
		t.Errorf("issuerRef not used:\n%s", docs["Certificate"][0])
	}
}

func TestChartWebhookURL(t *testing.T) {
	docs := render(t, "webhook: {url: \"https://127.0.0.1:8443/mutate\", namespaceSelector: {matchLabels: {phase-sidecar.dev/injection: enabled}}}\nfailurePolicy: Ignore\n")
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	docs.one(t, "MutatingWebhookConfiguration", &mwc)
	w := mwc.Webhooks[0]
	if w.ClientConfig.URL == nil || *w.ClientConfig.URL != "https://127.0.0.1:8443/mutate" || w.ClientConfig.Service != nil {
		t.Errorf("clientConfig %+v", w.ClientConfig)
	}
	if *w.FailurePolicy != admissionregistrationv1.Ignore || w.NamespaceSelector.MatchLabels["phase-sidecar.dev/injection"] != "enabled" {
		t.Errorf("webhook %+v", w)
	}
	var dep appsv1.Deployment
	docs.one(t, "Deployment", &dep)
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--failure-policy=Ignore") {
		t.Error("the injector's --failure-policy does not follow failurePolicy")
	}
}
