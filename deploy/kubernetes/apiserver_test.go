package kubernetes_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
)

// The published CRDs of the Prometheus Operator (see testdata's README).
const crdDir = "testdata/prometheus-operator"

// kubeWithCRDs starts a real kube-apiserver with the prometheus-operator
// CRDs installed.
func kubeWithCRDs(t *testing.T) *servers.KubeServer {
	t.Helper()
	k := servers.Kube(t, t.TempDir())
	files, err := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in %s: %v", crdDir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		applied, err := k.ApplyAll(t.Context(), b, servers.ApplyOptions{})
		if err != nil {
			t.Fatalf("install %s: %v", f, err)
		}
		for _, a := range applied {
			k.WaitCRD(t, a.Object["metadata"].(map[string]any)["name"].(string))
		}
	}
	return k
}

// render builds a kustomization into its objects, as kubectl apply -k
// would send them.
func render(t *testing.T, dir string) []map[string]any {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []map[string]any
	for _, r := range res.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, m)
	}
	return objs
}

func marshal(t *testing.T, obj map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// at walks obj along keys (map keys, or ints for list items) and returns
// what is there, or nil.
func at(obj any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := obj.(map[string]any)
			obj = m[k]
		case int:
			l, _ := obj.([]any)
			if k >= len(l) {
				return nil
			}
			obj = l[k]
		}
	}
	return obj
}

func kindName(obj map[string]any) string {
	return at(obj, "kind").(string) + "/" + at(obj, "metadata", "name").(string)
}

// apply server-side applies obj into namespace ns; a refusal fails the test
// with the server's message.
func apply(t *testing.T, k *servers.KubeServer, obj map[string]any, ns string, dryRun bool) map[string]any {
	t.Helper()
	a, err := k.Apply(t.Context(), marshal(t, obj), servers.ApplyOptions{Namespace: ns, DryRun: dryRun})
	if err != nil {
		t.Fatalf("the API server refused %s: %v", kindName(obj), err)
	}
	for _, w := range a.Warnings {
		t.Errorf("%s: the API server warns: %s", kindName(obj), w)
	}
	return a.Object
}

// TestAPIServer applies every overlay to a real kube-apiserver: first as a
// dry run, then for real into a namespace of its own; then each workload's
// pod template is created as a Pod (dry run), which runs the Pod validation
// and the ServiceAccount admission on it, and the native-sidecar fields are
// checked to have survived.
func TestAPIServer(t *testing.T) {
	k := kubeWithCRDs(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			ns := "phase-" + overlay
			k.Namespace(t, ns)
			objs := render(t, filepath.Join("overlays", overlay))
			for _, o := range objs {
				delete(o["metadata"].(map[string]any), "namespace") // into ns
				apply(t, k, o, ns, true)
			}
			for _, o := range objs {
				stored := apply(t, k, o, ns, false)
				if kind := at(o, "kind"); kind == "Deployment" || kind == "Job" {
					checkPod(t, k, ns, kindName(o), at(stored, "spec", "template").(map[string]any), kind == "Deployment")
				}
			}
		})
	}
}

// checkPod creates a Pod from a stored workload's template (dry run) and
// checks the sidecar is still what the manifest says: a native sidecar
// (restartPolicy Always, with its startupProbe) for a Deployment, a plain
// init container for a Job.
func checkPod(t *testing.T, k *servers.KubeServer, ns, owner string, template map[string]any, native bool) {
	t.Helper()
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": strings.ToLower(strings.ReplaceAll(owner, "/", "-")), "labels": at(template, "metadata", "labels")},
		"spec":     at(template, "spec"),
	}
	if native {
		// As the Deployment controller would; a Job's template already has one.
		pod["spec"].(map[string]any)["restartPolicy"] = "Always"
	}
	got := apply(t, k, pod, ns, true)
	sidecar := at(got, "spec", "initContainers", 0)
	if at(sidecar, "name") != "phase-sidecar" {
		t.Fatalf("%s: the first init container is %v, want phase-sidecar", owner, at(sidecar, "name"))
	}
	policy, probe := at(sidecar, "restartPolicy"), at(sidecar, "startupProbe")
	switch {
	case native && (policy != "Always" || probe == nil):
		t.Errorf("%s: the API server kept restartPolicy %v and startupProbe %v; a native sidecar needs Always and its probe", owner, policy, probe)
	case !native && policy != nil:
		t.Errorf("%s: the Job's init container has restartPolicy %v; it must run once", owner, policy)
	}
	// The ServiceAccount admission plugin mounted the kit's ServiceAccount
	// token (the one Vault's kubernetes auth reads) into the sidecar.
	found := false
	for _, m := range at(sidecar, "volumeMounts").([]any) {
		if at(m, "mountPath") == "/var/run/secrets/kubernetes.io/serviceaccount" {
			found = true
		}
	}
	if !found {
		t.Errorf("%s: no ServiceAccount token mounted in the sidecar", owner)
	}
}

// TestAPIServerRefuses breaks the kit's manifests in ways only the API
// server's validation catches (field rules across containers, a CRD's
// schema, strict field names): each must fail with the server's message,
// which the apply helper reports.
func TestAPIServerRefuses(t *testing.T) {
	k := kubeWithCRDs(t)
	k.Namespace(t, "phase")
	objs := render(t, filepath.Join("overlays", "vault"))
	find := func(kind string) map[string]any {
		for _, o := range objs {
			if at(o, "kind") == kind {
				// A fresh copy per case.
				var c map[string]any
				if err := yaml.Unmarshal(marshal(t, o), &c); err != nil {
					t.Fatal(err)
				}
				return c
			}
		}
		t.Fatalf("overlay vault has no %s", kind)
		return nil
	}
	sidecar := func(o map[string]any) map[string]any {
		return at(o, "spec", "template", "spec", "initContainers", 0).(map[string]any)
	}
	tests := []struct {
		name    string
		kind    string
		breakIt func(o map[string]any)
		code    int    // the server's HTTP status
		message string // part of the server's message
	}{
		{"a probe on a plain init container", "Deployment",
			func(o map[string]any) { delete(sidecar(o), "restartPolicy") },
			422, "spec.template.spec.initContainers[0].startupProbe: Forbidden: may not be set for init containers without restartPolicy=Always"},
		{"an init container restartPolicy that does not exist", "Job",
			func(o map[string]any) { sidecar(o)["restartPolicy"] = "Sometimes" },
			422, `spec.template.spec.initContainers[0].restartPolicy: Unsupported value: "Sometimes"`},
		{"a Deployment pod that does not restart", "Deployment",
			func(o map[string]any) { at(o, "spec", "template", "spec").(map[string]any)["restartPolicy"] = "Never" },
			422, `spec.template.spec.restartPolicy: Unsupported value: "Never"`},
		// Server-side apply answers a field outside the schema with a 500.
		{"a misspelt field", "Deployment",
			func(o map[string]any) { sidecar(o)["restartPolicyy"] = "Always" },
			500, `.spec.template.spec.initContainers[name="phase-sidecar"].restartPolicyy: field not declared in schema`},
		{"a PodMonitor endpoint the CRD schema refuses", "PodMonitor",
			func(o map[string]any) { at(o, "spec", "podMetricsEndpoints", 0).(map[string]any)["scheme"] = "ftp" },
			422, `spec.podMetricsEndpoints[0].scheme: Unsupported value: "ftp"`},
		{"a PodMonitor field the CRD does not have", "PodMonitor",
			func(o map[string]any) { at(o, "spec").(map[string]any)["podMetricEndpoints"] = []any{} },
			500, ".spec.podMetricEndpoints: field not declared in schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := find(tt.kind)
			tt.breakIt(o)
			_, err := k.Apply(t.Context(), marshal(t, o), servers.ApplyOptions{Namespace: "phase", DryRun: true})
			var ke *servers.KubeError
			if !errors.As(err, &ke) || ke.Code != tt.code || !strings.Contains(ke.Message, tt.message) {
				t.Errorf("apply: %v\nwant %d with %q", err, tt.code, tt.message)
			}
		})
	}
}
