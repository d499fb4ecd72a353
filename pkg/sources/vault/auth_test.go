package vault

import (
	"context"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
)

// kvFixture is a KV v2 mount with one secret and a policy that reads it.
type kvFixture struct {
	mount, policy, ref string
}

func newKVFixture(t *testing.T, d *devServer) kvFixture {
	t.Helper()
	f := kvFixture{mount: unique("kv")}
	d.enable(t, f.mount, "kv", map[string]string{"version": "2"})
	d.write(t, f.mount+"/data/app", map[string]any{"data": map[string]any{"password": "s3cr3t-canary"}})
	f.policy = d.policy(t, f.mount+"/data/*")
	f.ref = "vault://" + f.mount + "/app#password"
	return f
}

func (f kvFixture) fetch(t *testing.T, s *Source) {
	t.Helper()
	obj, err := s.Fetch(context.Background(), testenv.Ref(t, f.ref))
	if err != nil {
		t.Fatalf("fetch (a gap in the files): %v", err)
	}
	if got := testenv.Reveal(t, obj, "password"); got != "s3cr3t-canary" {
		t.Fatalf("password = %q", got)
	}
}

// approle sets up an AppRole role and returns the auth config for it.
func approle(t *testing.T, d *devServer, policy string, role map[string]any) Auth {
	t.Helper()
	mount := unique("approle")
	d.enableAuth(t, mount, "approle")
	name := unique("role")
	role["token_policies"] = policy
	d.write(t, "auth/"+mount+"/role/"+name, role)
	roleID, err := d.root.Logical().Read("auth/" + mount + "/role/" + name + "/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID := d.write(t, "auth/"+mount+"/role/"+name+"/secret-id", nil)
	dir := t.TempDir()
	cfg := Auth{
		Method:       "approle",
		Mount:        mount,
		RoleIDFile:   filepath.Join(dir, "role_id"),
		SecretIDFile: filepath.Join(dir, "secret_id"),
	}
	writeFile(t, cfg.RoleIDFile, roleID.Data["role_id"].(string)+"\n")
	writeFile(t, cfg.SecretIDFile, secretID.Data["secret_id"].(string))
	return cfg
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTokenRenewal(t *testing.T) {
	d := vaultDev(t)
	f := newKVFixture(t, d)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "test", "test")
	auth := approle(t, d, f.policy, map[string]any{"token_ttl": "3s", "token_max_ttl": "1h"})
	s := newSource(t, d, Config{Auth: auth}, Options{Metrics: m})
	ev := events(s)
	runSource(t, s)
	waitEvent(t, ev, "login")
	first := s.auth.snapshot().expiry
	if got := testutil.ToFloat64(m.CredentialExpiry.WithLabelValues("vault")); got != float64(first.Unix()) {
		t.Errorf("credential expiry metric = %v, want %v", got, first.Unix())
	}
	waitEvent(t, ev, "renew")
	tok := s.auth.snapshot()
	if !tok.expiry.After(first) {
		t.Errorf("renewal did not extend the token: %v then %v", first, tok.expiry)
	}
	if got := testutil.ToFloat64(m.CredentialExpiry.WithLabelValues("vault")); got != float64(tok.expiry.Unix()) {
		t.Errorf("credential expiry metric = %v, want %v", got, tok.expiry.Unix())
	}
	f.fetch(t, s)
}

// TestTokenMaxTTL checks that a token whose renewals are capped by its max
// TTL is replaced by a new login before it expires.
func TestTokenMaxTTL(t *testing.T) {
	d := vaultDev(t)
	f := newKVFixture(t, d)
	auth := approle(t, d, f.policy, map[string]any{"token_ttl": "3s", "token_max_ttl": "5s"})
	s := newSource(t, d, Config{Auth: auth}, Options{})
	ev := events(s)
	runSource(t, s)
	waitEvent(t, ev, "login")
	waitEvent(t, ev, "relogin")
	waitEvent(t, ev, "login")
	f.fetch(t, s)
}

// TestRevokedTokenLogsInAgain revokes the token behind the sidecar's back:
// the next fetch logs in again and succeeds, so no file goes stale.
func TestRevokedTokenLogsInAgain(t *testing.T) {
	d := vaultDev(t)
	f := newKVFixture(t, d)
	for _, wrapped := range []bool{false, true} {
		name := "plain secret_id"
		if wrapped {
			name = "wrapped secret_id"
		}
		t.Run(name, func(t *testing.T) {
			auth := approle(t, d, f.policy, map[string]any{"token_ttl": "1h"})
			if wrapped {
				// Replace the secret_id with a response-wrapping token.
				c, err := d.root.Clone()
				if err != nil {
					t.Fatal(err)
				}
				c.SetToken(rootToken)
				c.SetWrappingLookupFunc(func(string, string) string { return "5m" })
				sec, err := c.Logical().Write("auth/"+auth.Mount+"/role/"+roleOf(t, d, auth)+"/secret-id", nil)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, auth.SecretIDFile, sec.WrapInfo.Token)
				auth.WrappedSecretID = true
			}
			s := newSource(t, d, Config{Auth: auth}, Options{})
			ev := events(s)
			f.fetch(t, s)
			waitEvent(t, ev, "login")
			for range 2 {
				if err := d.root.Auth().Token().RevokeTreeWithContext(context.Background(), s.client.Token()); err != nil {
					t.Fatal(err)
				}
				f.fetch(t, s)
				waitEvent(t, ev, "login")
			}
		})
	}
}

// roleOf finds the role name of an approle config by its role_id.
func roleOf(t *testing.T, d *devServer, auth Auth) string {
	t.Helper()
	list, err := d.root.Logical().List("auth/" + auth.Mount + "/role")
	if err != nil || list == nil {
		t.Fatalf("list roles: %v", err)
	}
	return list.Data["keys"].([]any)[0].(string)
}

// TestTokenFile checks method token: the token comes from token_file, and a
// new token written there replaces a revoked one.
func TestTokenFile(t *testing.T) {
	d := vaultDev(t)
	f := newKVFixture(t, d)
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, d.childToken(t, "1h", f.policy)+"\n")
	s := newSource(t, d, Config{Auth: Auth{Method: "token", TokenFile: file}}, Options{})
	f.fetch(t, s)
	old := s.client.Token()
	if err := d.root.Auth().Token().RevokeTreeWithContext(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, d.childToken(t, "1h", f.policy))
	f.fetch(t, s)
	if s.client.Token() == old {
		t.Error("still using the revoked token")
	}
}

// TestTokenFileWatched checks that Run picks up a changed token_file.
func TestTokenFileWatched(t *testing.T) {
	d := vaultDev(t)
	f := newKVFixture(t, d)
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, d.childToken(t, "1h", f.policy))
	poll := tokenFilePoll
	t.Cleanup(func() { tokenFilePoll = poll }) // after Run has stopped
	tokenFilePoll = 50 * time.Millisecond
	s := newSource(t, d, Config{Auth: Auth{Method: "token", TokenFile: file}}, Options{})
	ev := events(s)
	runSource(t, s)
	waitEvent(t, ev, "login")
	next := d.childToken(t, "1h", f.policy)
	writeFile(t, file, next)
	waitEvent(t, ev, "login")
	if s.client.Token() != next {
		t.Error("the new token_file content is not in use")
	}
	f.fetch(t, s)
}

// TestConcurrentFetchesShareOneLogin starts many fetches before any login:
// they wait for one login and share its token.
func TestConcurrentFetchesShareOneLogin(t *testing.T) {
	d := vaultDev(t)
	f := newKVFixture(t, d)
	auth := approle(t, d, f.policy, map[string]any{"token_ttl": "1h"})
	s := newSource(t, d, Config{Auth: auth}, Options{})
	c := countRequests(s)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := s.Fetch(context.Background(), testenv.Ref(t, f.ref)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := c.count("PUT /v1/auth/" + auth.Mount + "/login"); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
}
