package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
)

// The soak tests run the binary against a real Vault whose AppRole tokens
// and leases are short-lived, and a real consumer of what it writes, and
// prove over time that the files never hold dead credentials: redis and
// PostgreSQL credentials from the database engine, each a bundle
// (username, password), and a PKI certificate bundle. Midway an admin
// revokes everything issued under the AppRole mount (sys/leases/revoke-prefix
// on auth/MOUNT/: the sidecar's token and every lease it created); the
// sidecar must recover. PHASE_SOAK sets the duration (soakDuration).
//
//	go test -race -run TestLeasesSurviveTokenRollover -v ./test/e2e/
//	PHASE_SOAK=10m go test -race -timeout 30m -run TestLeasesSurviveTokenRollover -v ./test/e2e/
//
// PHASE_SOAK_LOGS=DIR also writes each sidecar's whole log into DIR.

// The lifetimes: a token rolls over (a new login at its max TTL) at least
// every 15 s and a lease ends at least every 12 s, so 100 s see more than
// 5 of each; a certificate lives 10 s.
const (
	soakTokenTTL    = "6s"
	soakTokenMaxTTL = "15s"
	soakLeaseTTL    = "5s"
	soakLeaseMaxTTL = "12s"
	soakCertTTL     = "10s"
	// soakRecoverWithin bounds the time from the admin revoke to live
	// files again.
	soakRecoverWithin = 15 * time.Second
)

// TestLeasesSurviveTokenRollover runs the database and the PKI soak side by
// side against one Vault dev server.
func TestLeasesSurviveTokenRollover(t *testing.T) {
	if testing.Short() {
		t.Skip("a soak test (PHASE_SOAK, default 100s)")
	}
	// The sidecar inherits this environment: nothing in it may point it at
	// another Vault or give it a token.
	for _, k := range []string{"VAULT_ADDR", "VAULT_TOKEN", "VAULT_CACERT", "VAULT_NAMESPACE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	d := soakDuration(t)
	v := &soakVault{servers.Vault(t, t.TempDir(), servers.VaultOptions{Token: "phase-soak-root"})}
	t.Run("Databases", func(t *testing.T) { t.Parallel(); soakDatabases(t, v, d) })
	t.Run("PKI", func(t *testing.T) { t.Parallel(); soakPKI(t, v, d) })
}

// soakDatabases: redis and PostgreSQL credentials, one bundle each, from
// one sidecar under one AppRole token.
func soakDatabases(t *testing.T, v *soakVault, d time.Duration) {
	dir := t.TempDir()
	redis := servers.Redis(t, dir, "soak-redis-admin")
	pg := servers.Postgres(t, dir, "phase_admin", "soak-pg-admin")
	v.mount(t, "db-soak", "database")
	v.write(t, "db-soak/config/redis", map[string]any{
		"plugin_name": "redis-database-plugin", "host": "127.0.0.1", "port": redis.Port,
		"username": "default", "password": redis.Password, "allowed_roles": "redis",
	})
	v.write(t, "db-soak/config/postgres", map[string]any{
		"plugin_name": "postgresql-database-plugin", "connection_url": pg.ConnectionURL(),
		"username": pg.AdminUser, "password": pg.AdminPassword, "allowed_roles": "postgres",
	})
	v.write(t, "db-soak/roles/redis", map[string]any{
		"db_name": "redis", "creation_statements": `["~*", "+@read", "+ping"]`,
		"default_ttl": soakLeaseTTL, "max_ttl": soakLeaseMaxTTL,
	})
	// VALID UNTIL follows the lease (the plugin's renewal moves it), so an
	// expired lease cannot log in even before Vault drops the role.
	v.write(t, "db-soak/roles/postgres", map[string]any{
		"db_name":             "postgres",
		"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`},
		"default_ttl":         soakLeaseTTL, "max_ttl": soakLeaseMaxTTL,
	})
	src := v.approle(t, "approle-db", `path "db-soak/creds/*" { capabilities = ["read"] }`)
	reloads := newReloadLog(t)
	out := shm(t)
	cfg, addr := writeConfig(t, out, `refresh: 2s
secrets:
  - { name: REDIS_USERNAME, ref: "vault://db-soak/creds/redis#username", bundle: redis, file: username }
  - { name: REDIS_PASSWORD, ref: "vault://db-soak/creds/redis#password", bundle: redis, file: password }
  - { name: DATABASE_USERNAME, ref: "vault://db-soak/creds/postgres#username", bundle: postgres, file: username }
  - { name: DATABASE_PASSWORD, ref: "vault://db-soak/creds/postgres#password", bundle: postgres, file: password }
`+reloads.config()+src)
	s := start(t, cfg, addr)
	s.waitReady()

	member := []string{"username", "password"}
	redisProber := newProber("redis", filepath.Join(out, "redis"), member,
		func(_ context.Context, files map[string][]byte) (string, time.Time, error) {
			user := strings.TrimSpace(string(files["username"]))
			err := redis.Auth(user, strings.TrimSpace(string(files["password"])))
			if err != nil && strings.Contains(err.Error(), "WRONGPASS") {
				err = fmt.Errorf("%w: %v", errDead, err)
			}
			return user, time.Time{}, err
		})
	pgProber := newProber("postgres", filepath.Join(out, "postgres"), member,
		func(ctx context.Context, files map[string][]byte) (string, time.Time, error) {
			user := strings.TrimSpace(string(files["username"]))
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := pg.Login(ctx, user, strings.TrimSpace(string(files["password"])))
			if err != nil && (strings.Contains(err.Error(), "password authentication failed") ||
				strings.Contains(err.Error(), "not permitted to log in")) {
				err = fmt.Errorf("%w: %v", errDead, err)
			}
			return user, time.Time{}, err
		})
	redisProber.revokeKills, pgProber.revokeKills = true, true
	res := runSoak(t, s, v, "approle-db", d, reloads, redisProber, pgProber)
	want := res.want
	for i, f := range res.figures {
		name := []string{"redis", "postgres"}[i]
		soakCheck(t, name, f, d)
		if f.expiries < want {
			t.Errorf("%s: %d lease expiries observed, want >= %d", name, f.expiries, want)
		}
		if f.recovery < 0 || f.recovery > soakRecoverWithin {
			t.Errorf("%s: no live credentials within %v of the admin revoke (recovered after %v; -1: never)", name, soakRecoverWithin, f.recovery)
		}
	}
}

// soakPKI: a certificate, its key and chain as bundles; the prober checks
// that they match and that the certificate is valid and verifies.
func soakPKI(t *testing.T, v *soakVault, d time.Duration) {
	if err := v.Root.Sys().Mount("pki-soak", &api.MountInput{Type: "pki", Config: api.MountConfigInput{MaxLeaseTTL: "24h"}}); err != nil {
		t.Fatal(err)
	}
	v.write(t, "pki-soak/root/generate/internal", map[string]any{"common_name": "phase soak CA", "ttl": "24h"})
	v.write(t, "pki-soak/roles/web", map[string]any{
		"allowed_domains": "example.test", "allow_subdomains": true,
		"ttl": soakCertTTL, "max_ttl": soakCertTTL, "key_type": "ec", "key_bits": 256,
	})
	src := v.approle(t, "approle-pki", `path "pki-soak/issue/web" { capabilities = ["create", "update"] }`)
	reloads := newReloadLog(t)
	out := shm(t)
	const ref = "vault://pki-soak/issue/web?common_name=app.example.test"
	cfg, addr := writeConfig(t, out, `refresh: 2s
secrets:
  - { name: TLS_CERT, ref: "`+ref+`#certificate", bundle: tls, file: tls.crt }
  - { name: TLS_KEY, ref: "`+ref+`#private_key", bundle: tls, file: tls.key }
  - { name: TLS_CA, ref: "`+ref+`#ca_chain", bundle: tls, file: ca.crt }
  - { name: TLS, ref: "`+ref+`", bundle: tls-whole }
`+reloads.config()+src)
	s := start(t, cfg, addr)
	s.waitReady()

	// The same certificate twice: three members named by field, and the
	// whole expanding ref as a bundle (one file per field).
	fields := newProber("pki", filepath.Join(out, "tls"), []string{"tls.crt", "tls.key", "ca.crt"},
		func(_ context.Context, files map[string][]byte) (string, time.Time, error) {
			return checkCert(files["tls.crt"], files["tls.key"], files["ca.crt"], "app.example.test")
		})
	whole := newProber("pki-whole", filepath.Join(out, "tls-whole"), []string{"certificate", "private_key", "ca_chain"},
		func(_ context.Context, files map[string][]byte) (string, time.Time, error) {
			return checkCert(files["certificate"], files["private_key"], files["ca_chain"], "app.example.test")
		})
	res := runSoak(t, s, v, "approle-pki", d, reloads, fields, whole)
	for i, f := range res.figures {
		name := []string{"pki", "pki-whole"}[i]
		soakCheck(t, name, f, d)
		if len(f.margins) > 0 && f.margins[0] <= 0 {
			t.Errorf("%s: a certificate was replaced %v after its NotAfter", name, -f.margins[0])
		}
	}
}

// checkCert: the key matches the certificate, which is valid now for cn
// and verifies against the chain. A mismatch, an expired certificate or a
// broken chain is errDead; the id is the serial.
func checkCert(certPEM, keyPEM, caPEM []byte, cn string) (string, time.Time, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Sprintf("unparsable %x", certPEM[:min(len(certPEM), 64)]), time.Time{}, fmt.Errorf("%w: certificate and key: %v", errDead, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return "", time.Time{}, fmt.Errorf("%w: certificate: %v", errDead, err)
		}
	}
	id, expiry := leaf.SerialNumber.String(), leaf.NotAfter
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return id, expiry, fmt.Errorf("%w: ca.crt holds no certificate", errDead)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: cn, CurrentTime: time.Now()}); err != nil {
		return id, expiry, fmt.Errorf("%w: %v", errDead, err)
	}
	return id, expiry, nil
}

// soakCheck holds what every soak must show: no probe of dead contents
// outside the reload window, enough replacements, a prober that ran and
// reached its consumer.
func soakCheck(t *testing.T, name string, f figures, d time.Duration) {
	t.Helper()
	t.Logf("%s: %v", name, f)
	if f.dead > 0 {
		t.Errorf("%s: %d of %d probes found dead contents in the files (outside the %v reload window and the revocation); first problems:\n  %s",
			name, f.dead, f.probes, reloadWindow, strings.Join(f.firstErrs, "\n  "))
	}
	if want := soakWant(d); f.replacements < want {
		t.Errorf("%s: %d generations replaced, want >= %d", name, f.replacements, want)
	}
	if least := int(d / probeEvery / 4); f.probes < least {
		t.Errorf("%s: only %d probes in %v (want >= %d): the prober did not keep up", name, f.probes, d, least)
	}
	if f.errs > f.probes/20 {
		t.Errorf("%s: %d of %d probes could not reach the consumer: the figures mean little; first problems:\n  %s",
			name, f.errs, f.probes, strings.Join(f.firstErrs, "\n  "))
	}
}

// soakWant is how many rollovers, expiries and replacements a soak of d
// must see: 5 for the default 100 s, fewer for a shorter debugging run.
func soakWant(d time.Duration) int {
	return max(1, min(5, int(d/(18*time.Second))))
}

// soakResult is what runSoak saw.
type soakResult struct {
	figures []figures // one per prober, in order
	want    int
}

// runSoak probes for d, with the admin revoke-prefix on auth/MOUNT/ at d/2,
// then checks the token rollovers the sidecar logged and logs the figures.
func runSoak(t *testing.T, s *sidecar, v *soakVault, mount string, d time.Duration, reloads *reloadLog, ps ...*prober) soakResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.run(ctx) }()
	}
	begin := time.Now()
	time.Sleep(d / 2)
	from := time.Now()
	if err := v.Root.Sys().RevokePrefix("auth/" + mount + "/"); err != nil {
		t.Errorf("revoke-prefix auth/%s/: %v", mount, err)
	}
	to := time.Now()
	for _, p := range ps {
		p.revoke(from, to)
	}
	time.Sleep(d - time.Since(begin))
	cancel()
	wg.Wait()
	end := time.Now()
	if s.exited() {
		t.Fatalf("the sidecar exited during the soak")
	}

	logins := s.logins(t)
	rollovers, afterRevoke := len(logins)-1, 0
	for _, at := range logins {
		if at.After(from) {
			afterRevoke++
		}
	}
	res := soakResult{want: soakWant(d)}
	t.Logf("%v soak: %d token rollovers (%d logins after the revoke at +%v), %d reloads",
		d, rollovers, afterRevoke, from.Sub(begin).Round(time.Millisecond), len(reloads.times()))
	if rollovers < res.want {
		t.Errorf("%d token rollovers (logged in lines), want >= %d", rollovers, res.want)
	}
	if afterRevoke == 0 {
		t.Error("no login after the admin revoke")
	}
	for _, p := range ps {
		p.timeline(t, begin)
		res.figures = append(res.figures, p.figures(reloads.times(), end))
	}
	s.logMetrics(t)
	if dir := os.Getenv("PHASE_SOAK_LOGS"); dir != "" {
		// The whole sidecar log, for a look at what it did when.
		file := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".log")
		if err := os.WriteFile(file, []byte(s.out.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	return res
}

// logins are the times of the sidecar's "logged in" log lines.
func (s *sidecar) logins(t *testing.T) []time.Time {
	t.Helper()
	var at []time.Time
	sc := bufio.NewScanner(strings.NewReader(s.out.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var line struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "logged in" {
			at = append(at, line.Time)
		}
	}
	return at
}

// logMetrics logs the series that say whether the sidecar knew.
func (s *sidecar) logMetrics(t *testing.T) {
	t.Helper()
	_, body := s.get("/metrics")
	var keep []string
	for _, line := range strings.Split(body, "\n") {
		for _, name := range []string{"phase_sidecar_secret_stale{", "phase_sidecar_secret_fetch_errors_total{", "phase_sidecar_reloads_total{", "phase_sidecar_source_requests_total{"} {
			if strings.HasPrefix(line, name) {
				keep = append(keep, line)
			}
		}
	}
	t.Logf("metrics at the end:\n  %s", strings.Join(keep, "\n  "))
}

// reloadLog is an HTTP reload endpoint that records when the app was told.
type reloadLog struct {
	url string
	mu  sync.Mutex
	at  []time.Time
}

func newReloadLog(t *testing.T) *reloadLog {
	r := &reloadLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		r.at = append(r.at, time.Now())
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/reload"
	return r
}

// config is the reload: section: a short coalesce, so that the reload
// window is short too.
func (r *reloadLog) config() string {
	return fmt.Sprintf("reload:\n  http: { url: %q, timeout: 2s }\n  coalesce: 200ms\n  max_wait: 1s\n", r.url)
}

func (r *reloadLog) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}

// soakVault is the dev server with the root client.
type soakVault struct{ *servers.VaultServer }

func (v *soakVault) write(t *testing.T, path string, data map[string]any) *api.Secret {
	t.Helper()
	sec, err := v.Root.Logical().Write(path, data)
	if err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
	return sec
}

func (v *soakVault) mount(t *testing.T, path, typ string) {
	t.Helper()
	if err := v.Root.Sys().Mount(path, &api.MountInput{Type: typ}); err != nil {
		t.Fatalf("mount %s at %s: %v", typ, path, err)
	}
}

// approle enables AppRole at mount with one role whose short-lived tokens
// hold a policy of hcl, writes its role_id and secret_id to files and
// returns the sources: section that logs in with them.
func (v *soakVault) approle(t *testing.T, mount, hcl string) string {
	t.Helper()
	if err := v.Root.Sys().EnableAuthWithOptions(mount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatalf("enable approle at %s: %v", mount, err)
	}
	if err := v.Root.Sys().PutPolicy(mount, hcl); err != nil {
		t.Fatal(err)
	}
	role := "auth/" + mount + "/role/sidecar"
	v.write(t, role, map[string]any{"token_policies": mount, "token_ttl": soakTokenTTL, "token_max_ttl": soakTokenMaxTTL})
	rid, err := v.Root.Logical().Read(role + "/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := v.write(t, role+"/secret-id", nil)
	dir := t.TempDir()
	roleFile, secretFile := filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	if err := os.WriteFile(roleFile, []byte(rid.Data["role_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(sid.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`sources:
  vault:
    address: %s
    auth: { method: approle, mount: %s, role_id_file: %s, secret_id_file: %s }
`, v.URL, mount, roleFile, secretFile)
}
