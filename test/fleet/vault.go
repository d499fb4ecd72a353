package fleet

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
)

// Vault is a Vault dev server whose KV v2 mount secret/ holds every pod's
// paths under secret/fleet/; pods log in with one AppRole role.
type Vault struct {
	srv                      *servers.VaultServer
	roleIDFile, secretIDFile string
}

var _ Backend = (*Vault)(nil)

// NewVault starts the dev server with its files in dir and sets up the
// role the pods log in with.
func NewVault(t testing.TB, dir string) *Vault {
	t.Helper()
	srv := servers.Vault(t, dir, servers.VaultOptions{})
	v := &Vault{srv: srv, roleIDFile: filepath.Join(dir, "role_id"), secretIDFile: filepath.Join(dir, "secret_id")}
	if err := srv.Root.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatalf("enable approle: %v", err)
	}
	if err := srv.Root.Sys().PutPolicy("fleet", `path "secret/data/fleet/*" { capabilities = ["read"] }`); err != nil {
		t.Fatalf("policy: %v", err)
	}
	// The KV v2 mount answers "upgrading" until it is ready.
	v.write(t, "secret/data/ready", map[string]any{"data": map[string]any{"ok": "yes"}})
	// A token outlives the run: renewals and re-logins would only come
	// from the client's own error handling.
	v.write(t, "auth/approle/role/fleet", map[string]any{"token_policies": "fleet", "token_ttl": "4h", "token_max_ttl": "4h"})
	rid, err := srv.Root.Logical().Read("auth/approle/role/fleet/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := v.write(t, "auth/approle/role/fleet/secret-id", nil)
	writeFile(t, v.roleIDFile, rid.Data["role_id"].(string))
	writeFile(t, v.secretIDFile, sid.Data["secret_id"].(string))
	return v
}

func (v *Vault) Name() string { return "vault" }

func (v *Vault) URLs() []string { return []string{v.srv.URL} }

func (v *Vault) Classes() []string { return []string{"login", "read", "mounts", "other"} }

// Classify counts logins (any auth method's login), KV reads, mount
// lookups (KV version detection) and the rest (token renewals, lookups).
func (v *Vault) Classify(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/auth/") && strings.HasSuffix(p, "/login"):
		return "login"
	case strings.HasPrefix(p, "/v1/secret/"):
		return "read"
	case strings.HasPrefix(p, "/v1/sys/internal/ui/mounts/"):
		return "mounts"
	default:
		return "other"
	}
}

// KVPath is the logical path of pod i's path j (without the KV v2 data/).
func (v *Vault) KVPath(i, j int) string { return fmt.Sprintf("secret/fleet/s%d/p%d", i, j) }

func (v *Vault) Ref(i, j int) string { return "vault://" + v.KVPath(i, j) + "#value" }

func (v *Vault) Put(t testing.TB, n, paths, gen int) {
	t.Helper()
	parallel(t, n*paths, func(k int) error {
		i, j := k/paths, k%paths
		_, err := v.srv.Root.Logical().Write(fmt.Sprintf("secret/data/fleet/s%d/p%d", i, j),
			map[string]any{"data": map[string]any{"value": Value(i, j, gen)}})
		return err
	})
}

func (v *Vault) Sources(proxyURL string) string {
	return fmt.Sprintf("sources:\n  vault:\n    address: %s\n    auth:\n      method: approle\n      role_id_file: %s\n      secret_id_file: %s\n",
		proxyURL, v.roleIDFile, v.secretIDFile)
}

func (v *Vault) Env(string) []string { return nil }

// write is a root write; a KV v2 mount answers "upgrading" for a moment
// after the server starts, and that is retried.
func (v *Vault) write(t testing.TB, path string, data map[string]any) *api.Secret {
	t.Helper()
	for attempt := 0; ; attempt++ {
		sec, err := v.srv.Root.Logical().Write(path, data)
		if err == nil {
			return sec
		}
		if attempt < 100 && strings.Contains(err.Error(), "upgrad") {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("vault write %s: %v", path, err)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
