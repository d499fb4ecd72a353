package servers

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestKube checks the launcher against the real server: the admin token,
// the kubeconfig, ServiceAccount tokens reviewed by an auth-delegator,
// RBAC refusing a plain ServiceAccount, and apply with and without dry run.
func TestKube(t *testing.T) {
	k := Kube(t, t.TempDir())
	ctx := t.Context()
	k.Namespace(t, "kube-test")
	k.ServiceAccount(t, "kube-test", "reviewer")
	k.ServiceAccount(t, "kube-test", "app")
	k.BindClusterRole(t, "system:auth-delegator", "kube-test", "reviewer")

	cfg, err := os.ReadFile(k.Kubeconfig)
	if err != nil || !strings.Contains(string(cfg), k.URL) || !strings.Contains(string(cfg), k.Token) {
		t.Errorf("kubeconfig %s does not name the server and token: %v", k.Kubeconfig, err)
	}

	// A reviewer's TokenReview of the app's token with its audience.
	reviewer := k.As(k.ServiceAccountToken(t, "kube-test", "reviewer", TokenOptions{}))
	appToken := k.ServiceAccountToken(t, "kube-test", "app", TokenOptions{Audiences: []string{"vault"}})
	var review struct {
		Status struct {
			Authenticated bool     `json:"authenticated"`
			Audiences     []string `json:"audiences"`
			User          struct {
				Username string `json:"username"`
			} `json:"user"`
		} `json:"status"`
	}
	if err := reviewer.Do(ctx, http.MethodPost, "/apis/authentication.k8s.io/v1/tokenreviews", map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
		"spec": map[string]any{"token": appToken, "audiences": []string{"vault"}},
	}, &review); err != nil {
		t.Fatal(err)
	}
	if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:kube-test:app" {
		t.Errorf("TokenReview = %+v", review.Status)
	}

	// Without the binding, RBAC refuses.
	app := k.As(appToken)
	err = app.Do(ctx, http.MethodGet, "/api/v1/namespaces/kube-test/secrets", nil, nil)
	if !IsKubeReason(err, "Unauthorized") {
		// The token's audience is vault, not the API server's.
		t.Errorf("a vault-audience token listing secrets: %v, want Unauthorized", err)
	}
	app = k.As(k.ServiceAccountToken(t, "kube-test", "app", TokenOptions{}))
	if err := app.Do(ctx, http.MethodGet, "/api/v1/namespaces/kube-test/secrets", nil, nil); !IsKubeReason(err, "Forbidden") {
		t.Errorf("a plain ServiceAccount listing secrets: %v, want Forbidden", err)
	}

	cm := `apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
data:
  k: v
`
	tests := []struct {
		name, manifest string
		dryRun         bool
		code           int    // a *KubeError's, or 0 for success
		message        string // part of the server's message
	}{
		{"dry run", strings.Replace(cm, "probe", "probe-dry", 1), true, 0, ""},
		{"stored", cm, false, 0, ""},
		// Server-side apply answers an unknown field with a 500.
		{"unknown field", strings.Replace(cm, "\ndata:", "\ndta:", 1), true, 500, ".dta: field not declared in schema"},
		{"invalid name", strings.Replace(cm, "probe", "Not_A_Name", 1), true, 422, "a lowercase RFC 1123 subdomain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := k.Apply(ctx, []byte(tt.manifest), ApplyOptions{Namespace: "kube-test", DryRun: tt.dryRun})
			if tt.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if a.Object["kind"] != "ConfigMap" {
					t.Errorf("applied object %v", a.Object)
				}
				return
			}
			var ke *KubeError
			if !errors.As(err, &ke) || ke.Code != tt.code || !strings.Contains(ke.Message, tt.message) {
				t.Errorf("apply: %v; want %d with %q", err, tt.code, tt.message)
			}
		})
	}
	// Only the stored apply is there.
	if err := k.Do(ctx, http.MethodGet, "/api/v1/namespaces/kube-test/configmaps/probe", nil, nil); err != nil {
		t.Error(err)
	}
	if err := k.Do(ctx, http.MethodGet, "/api/v1/namespaces/kube-test/configmaps/probe-dry", nil, nil); !IsKubeReason(err, "NotFound") {
		t.Errorf("the dry-run ConfigMap: %v, want NotFound", err)
	}

	// A stream stops at its first refused document and names it.
	stream := cm + "---\n" + strings.Replace(cm, "name: probe", "name: Bad_Name", 1) + "---\n" + strings.Replace(cm, "probe", "never", 1)
	applied, err := k.ApplyAll(ctx, []byte(stream), ApplyOptions{Namespace: "kube-test", DryRun: true})
	if len(applied) != 1 || !IsKubeReason(err, "Invalid") || !strings.Contains(err.Error(), "document 1 (ConfigMap Bad_Name)") {
		t.Errorf("ApplyAll: %d applied, %v", len(applied), err)
	}
}
