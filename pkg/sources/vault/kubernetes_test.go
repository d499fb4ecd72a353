package vault

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// kubeAuth is Vault's kubernetes auth method configured against a real
// kube-apiserver, with a role for ServiceAccount ns/backend.
type kubeAuth struct {
	d     *devServer
	k     *servers.KubeServer
	f     kvFixture
	ns    string
	mount string
}

// The audience the role requires: Vault passes it in the TokenReview, so a
// token minted for the API server itself is refused.
const vaultAudience = "vault"

func newKubeAuth(t *testing.T) *kubeAuth {
	t.Helper()
	d := vaultDev(t)
	ka := &kubeAuth{d: d, k: servers.Kube(t, t.TempDir()), f: newKVFixture(t, d), ns: "phase", mount: unique("kubernetes")}
	ka.k.Namespace(t, ka.ns)
	for _, sa := range []string{"vault-reviewer", "backend", "worker"} {
		ka.k.ServiceAccount(t, ka.ns, sa)
	}
	// Vault calls the TokenReview API as this ServiceAccount; the bootstrap
	// ClusterRole system:auth-delegator grants create on tokenreviews.
	ka.k.BindClusterRole(t, "system:auth-delegator", ka.ns, "vault-reviewer")
	ka.configure(t, ka.mount, "vault-reviewer")
	return ka
}

// configure enables the kubernetes method at mount with reviewer's token as
// token_reviewer_jwt and the role backend.
func (ka *kubeAuth) configure(t *testing.T, mount, reviewer string) {
	t.Helper()
	ka.d.enableAuth(t, mount, "kubernetes")
	ka.d.write(t, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host":      ka.k.URL,
		"kubernetes_ca_cert":   string(ka.k.CA),
		"token_reviewer_jwt":   ka.k.ServiceAccountToken(t, ka.ns, reviewer, servers.TokenOptions{Expiration: time.Hour}),
		"disable_local_ca_jwt": true, // Vault runs outside the cluster
	})
	ka.d.write(t, "auth/"+mount+"/role/backend", map[string]any{
		"bound_service_account_names":      "backend",
		"bound_service_account_namespaces": ka.ns,
		"audience":                         vaultAudience,
		"token_policies":                   ka.f.policy,
		"token_ttl":                        "1h",
	})
}

// source is the sidecar's Vault source logging in at mount as role backend
// with the JWT in file.
func (ka *kubeAuth) source(t *testing.T, mount, file string) *Source {
	t.Helper()
	return newSource(t, ka.d, Config{Auth: Auth{Method: "kubernetes", Mount: mount, Role: "backend", JWTFile: file}}, Options{})
}

// token is a TokenRequest token of ServiceAccount sa for the Vault audience.
func (ka *kubeAuth) token(t *testing.T, sa string, o servers.TokenOptions) string {
	t.Helper()
	if o.Audiences == nil {
		o.Audiences = []string{vaultAudience}
	}
	return ka.k.ServiceAccountToken(t, ka.ns, sa, o)
}

// login logs in at mount as role backend with jwt, outside the Source.
func (ka *kubeAuth) login(t *testing.T, mount, jwt string) error {
	t.Helper()
	c, err := ka.d.root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	_, err = c.Logical().WriteWithContext(t.Context(), "auth/"+mount+"/login", map[string]any{"role": "backend", "jwt": jwt})
	return err
}

// TestKubernetesAuth logs the Source in with Vault's kubernetes method,
// which reviews the ServiceAccount token with a real kube-apiserver.
func TestKubernetesAuth(t *testing.T) {
	ka := newKubeAuth(t)
	unbound := unique("kubernetes")
	ka.configure(t, unbound, "worker") // a reviewer without system:auth-delegator

	tests := []struct {
		name  string
		mount string
		jwt   func(t *testing.T) string
		want  string // "" to log in and read, or part of Vault's refusal
	}{
		{"the role's ServiceAccount", ka.mount,
			func(t *testing.T) string { return ka.token(t, "backend", servers.TokenOptions{}) }, ""},
		{"another ServiceAccount", ka.mount,
			func(t *testing.T) string { return ka.token(t, "worker", servers.TokenOptions{}) },
			"service account name not authorized"},
		{"the API server's audience", ka.mount,
			func(t *testing.T) string {
				return ka.token(t, "backend", servers.TokenOptions{Audiences: []string{ka.k.Issuer}})
			}, "invalid audience (aud) claim"},
		{"a reviewer that may not review", unbound,
			func(t *testing.T) string { return ka.token(t, "backend", servers.TokenOptions{}) }, "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "token")
			writeFile(t, file, tt.jwt(t))
			s := ka.source(t, tt.mount, file)
			if tt.want == "" {
				ka.f.fetch(t, s)
				return
			}
			_, err := s.Fetch(t.Context(), testenv.Ref(t, ka.f.ref))
			if !errors.Is(err, sources.ErrAuth) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("fetch: %v; want an auth error with %q", err, tt.want)
			}
			checkNoCanary(t, err)
		})
	}
}

// TestKubernetesAuthRotatedToken replaces the token file with a new
// TokenRequest token and invalidates the old one in the API server (each
// is bound to a Secret of its own; deleting the Secret kills its token):
// the next login reads the new file and succeeds.
func TestKubernetesAuthRotatedToken(t *testing.T) {
	ka := newKubeAuth(t)
	for _, name := range []string{"token-1", "token-2"} {
		if err := ka.k.Do(t.Context(), http.MethodPost, "/api/v1/namespaces/"+ka.ns+"/secrets", map[string]any{
			"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": name},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	old := ka.token(t, "backend", servers.TokenOptions{BoundKind: "Secret", BoundName: "token-1"})
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, old)
	s := ka.source(t, ka.mount, file)
	logins := countRequests(s)
	ka.f.fetch(t, s)

	writeFile(t, file, ka.token(t, "backend", servers.TokenOptions{BoundKind: "Secret", BoundName: "token-2"}))
	if err := ka.k.Do(t.Context(), http.MethodDelete, "/api/v1/namespaces/"+ka.ns+"/secrets/token-1", nil, nil); err != nil {
		t.Fatal(err)
	}
	// The API server keeps a token's successful authentication for 10 s
	// and reads Secrets through an informer: the deletion shows a little
	// later.
	deadline := time.Now().Add(time.Minute)
	for ka.login(t, ka.mount, old) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the old token still logs in after its Secret was deleted")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Revoke the Vault token: the next fetch must log in again, and only
	// the new file content can.
	if err := ka.d.root.Auth().Token().RevokeTreeWithContext(t.Context(), s.client.Token()); err != nil {
		t.Fatal(err)
	}
	ka.f.fetch(t, s)
	if n := logins.count("PUT /v1/auth/" + ka.mount + "/login"); n != 2 {
		t.Errorf("logins = %d, want 2", n)
	}
}
