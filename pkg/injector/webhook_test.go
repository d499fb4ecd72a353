package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func review(t *testing.T, h http.Handler, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, int) {
	t.Helper()
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, Path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return nil, w.Code
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != req.UID {
		t.Fatalf("review %+v", out)
	}
	return out.Response, w.Code
}

func podRequest(t *testing.T, podYAMLText string) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(podYAMLText))
	if err != nil {
		t.Fatal(err)
	}
	return &admissionv1.AdmissionRequest{
		UID:       "8f7c4d8e-0000-4000-8000-000000000001",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  podResource,
		Namespace: "apps",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

func TestWebhook(t *testing.T) {
	in, _ := newTestInjector(t, fakeConfigMaps{"apps/phase-sidecar": {ConfigKey: vaultConfig}}, "", false)
	t.Run("injects", func(t *testing.T) {
		resp, _ := review(t, in, podRequest(t, backendPod))
		if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("response %+v", resp)
		}
		var ops []Op
		if err := json.Unmarshal(resp.Patch, &ops); err != nil || len(ops) == 0 {
			t.Fatalf("patch %s: %v", resp.Patch, err)
		}
	})
	t.Run("refuses", func(t *testing.T) {
		resp, _ := review(t, in, podRequest(t, strings.Replace(backendPod, `config: phase-sidecar`, `config: absent`, 1)))
		if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, "ConfigMap apps/absent") || resp.Patch != nil {
			t.Fatalf("response %+v", resp)
		}
	})
	t.Run("other requests pass", func(t *testing.T) {
		req := podRequest(t, backendPod)
		req.Operation = admissionv1.Update
		if resp, _ := review(t, in, req); !resp.Allowed || resp.Patch != nil {
			t.Errorf("update: %+v", resp)
		}
		req = podRequest(t, backendPod)
		req.Resource = metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
		if resp, _ := review(t, in, req); !resp.Allowed || resp.Patch != nil {
			t.Errorf("deployment: %+v", resp)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		for _, tc := range []struct {
			method, ctype, body string
			code                int
		}{
			{http.MethodGet, "application/json", "", http.StatusMethodNotAllowed},
			{http.MethodPost, "text/plain", "{}", http.StatusUnsupportedMediaType},
			{http.MethodPost, "application/json", "{", http.StatusBadRequest},
			{http.MethodPost, "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest},
		} {
			r := httptest.NewRequest(tc.method, Path, strings.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ctype)
			w := httptest.NewRecorder()
			in.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Errorf("%s %s %q: %d, want %d", tc.method, tc.ctype, tc.body, w.Code, tc.code)
			}
		}
		req := podRequest(t, backendPod)
		req.Object.Raw = []byte(`{"spec":{"containers":"no"}}`)
		if resp, _ := review(t, in, req); resp.Allowed || resp.Result.Code != http.StatusBadRequest {
			t.Errorf("undecodable pod: %+v", resp)
		}
	})
}
