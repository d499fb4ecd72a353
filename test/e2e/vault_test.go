package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// The Vault tests run the binary against one real `vault server -dev` for
// the whole of TestVault. The sidecar logs in with AppRole (one subtest with
// a token file), never with the root token, which only the test uses to
// seed data, rotate it and change policies. Every subtest has KV paths,
// a policy and an AppRole role of its own, so the subtests run in parallel.

const vaultRootToken = "phase-e2e-vault-root"

// vaultServer is the dev server and a root client for it.
type vaultServer struct {
	addr  string // http://127.0.0.1:PORT
	root  *api.Client
	audit string // the file audit device's log

	mu  sync.Mutex
	seq int
}

// startVault runs `vault server -dev` until the test ends, with a file
// audit device that records every request and AppRole enabled.
func startVault(t *testing.T) *vaultServer {
	t.Helper()
	dev := servers.Vault(t, t.TempDir(), servers.VaultOptions{Token: vaultRootToken, Audit: true})
	v := &vaultServer{addr: dev.URL, root: dev.Root, audit: dev.AuditLog}
	if err := v.root.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatalf("enable approle: %v", err)
	}
	return v
}

func (v *vaultServer) unique(prefix string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seq++
	return fmt.Sprintf("%s%d", prefix, v.seq)
}

// write is a root write that must succeed. A KV v2 mount answers
// "upgrading" for a moment after the server starts, so that is retried.
func (v *vaultServer) write(t *testing.T, path string, data map[string]any) *api.Secret {
	t.Helper()
	for attempt := 0; ; attempt++ {
		sec, err := v.root.Logical().Write(path, data)
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

// kvPut writes a new version of secret/PATH (the dev server's KV v2 mount)
// and returns its version number.
func (v *vaultServer) kvPut(t *testing.T, path string, data map[string]any) int {
	t.Helper()
	sec := v.write(t, "secret/data/"+path, map[string]any{"data": data})
	n, err := sec.Data["version"].(json.Number).Int64()
	if err != nil {
		t.Fatalf("kv put %s: version: %v", path, err)
	}
	return int(n)
}

func (v *vaultServer) policy(t *testing.T, name, hcl string) {
	t.Helper()
	if err := v.root.Sys().PutPolicy(name, hcl); err != nil {
		t.Fatalf("policy %s: %v", name, err)
	}
}

// approle creates a policy with hcl and an AppRole role holding it, and
// writes the role_id and secret_id into files. It returns the policy name
// and the sources: section of a config that logs in with that role.
func (v *vaultServer) approle(t *testing.T, hcl string) (policy, sourcesYAML string) {
	t.Helper()
	policy = v.unique("phase-e2e-")
	v.policy(t, policy, hcl)
	role := v.unique("role-")
	v.write(t, "auth/approle/role/"+role, map[string]any{"token_policies": policy, "token_ttl": "10m"})
	rid, err := v.root.Logical().Read("auth/approle/role/" + role + "/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid := v.write(t, "auth/approle/role/"+role+"/secret-id", nil)
	dir := t.TempDir()
	roleFile, secretFile := filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	if err := os.WriteFile(roleFile, []byte(rid.Data["role_id"].(string)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(sid.Data["secret_id"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	return policy, fmt.Sprintf(`sources:
  vault:
    address: %s
    auth:
      method: approle
      role_id_file: %s
      secret_id_file: %s
`, v.addr, roleFile, secretFile)
}

// auditReads counts the read requests for path that reached Vault.
func (v *vaultServer) auditReads(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(v.audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var e struct {
			Type    string `json:"type"`
			Request struct {
				Operation string `json:"operation"`
				Path      string `json:"path"`
			} `json:"request"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type == "request" && e.Request.Operation == "read" && e.Request.Path == path {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// vaultSecret is one secret of /v1/status.
type vaultSecret struct {
	Name       string     `json:"name"`
	Written    bool       `json:"written"`
	Version    string     `json:"version"`
	Files      []string   `json:"files"`
	LastSync   *time.Time `json:"last_sync"`
	LastChange *time.Time `json:"last_change"`
	Expiry     *time.Time `json:"expiry"`
	LastError  string     `json:"last_error"`
}

// vaultStatus reads /v1/status by secret name.
func vaultStatus(t *testing.T, s *sidecar) map[string]vaultSecret {
	t.Helper()
	code, body := s.get("/v1/status")
	if code != 200 {
		t.Fatalf("/v1/status: %d %s", code, body)
	}
	var doc struct {
		Secrets []vaultSecret `json:"secrets"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/v1/status: %v\n%s", err, body)
	}
	out := map[string]vaultSecret{}
	for _, sec := range doc.Secrets {
		out[sec.Name] = sec
	}
	return out
}

// metricValue finds the sample of name whose labels include every
// `key="value"` pair given as "key=value".
func metricValue(text, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series := line[:i]
		match := true
		for _, l := range labels {
			k, val, _ := strings.Cut(l, "=")
			if !strings.Contains(series, k+"="+strconv.Quote(val)) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(line[i+1:], 64)
		return f, err == nil
	}
	return 0, false
}

// vaultMetric scrapes /metrics and returns one sample (-1 when absent).
func vaultMetric(s *sidecar, name string, labels ...string) float64 {
	s.t.Helper()
	_, body := s.get("/metrics")
	f, ok := metricValue(body, name, labels...)
	if !ok {
		return -1
	}
	return f
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVault runs the sidecar against a real Vault dev server.
func TestVault(t *testing.T) {
	// The sidecar inherits this environment: nothing in it may point it
	// at another Vault or give it a token.
	for _, k := range []string{"VAULT_ADDR", "VAULT_TOKEN", "VAULT_CACERT", "VAULT_NAMESPACE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	v := startVault(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *vaultServer)
	}{
		{"KVFieldsObjectSplit", testVaultKV},
		{"RotationOneReload", testVaultRotation},
		{"PKIBundle", testVaultPKI},
		{"ErrorsKeepLastGood", testVaultErrors},
		{"TokenFile", testVaultToken},
		{"OnceRefused", testVaultOnceRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, v)
		})
	}
}

// testVaultKV: two fields of one KV v2 path, the whole object as JSON, and
// a split object; the shared path costs one read.
func testVaultKV(t *testing.T, v *vaultServer) {
	out := shm(t)
	backend := map[string]any{"secret_key": value("sk1"), "database_password": value("db1")}
	v.kvPut(t, "phase/backend", backend)
	v.kvPut(t, "phase/frontend", map[string]any{"session_key": value("fe1"), "api.token": value("fe2")})
	_, src := v.approle(t, `
path "secret/data/phase/backend" { capabilities = ["read"] }
path "secret/data/phase/frontend" { capabilities = ["read"] }
`)
	cfg, addr := writeConfig(t, out, `refresh: 1h
secrets:
  - name: SECRET_KEY
    ref: "vault://secret/phase/backend#secret_key"
  - name: DATABASE_PASSWORD
    ref: "vault://secret/phase/backend#database_password"
  - name: BACKEND
    ref: "vault://secret/phase/backend"
  - name: FRONTEND
    ref: "vault://secret/phase/frontend?split=true"
`+src)
	s := start(t, cfg, addr)
	s.waitReady()

	for file, want := range map[string]string{
		"secret_key":           value("sk1"),
		"database_password":    value("db1"),
		"frontend_session_key": value("fe1"),
		"frontend_api.token":   value("fe2"),
	} {
		if got := readFile(t, filepath.Join(out, file)); got != want {
			t.Errorf("%s holds the wrong value", file)
		}
	}
	var whole map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(out, "backend"))), &whole); err != nil {
		t.Fatalf("backend is not a JSON object: %v", err)
	}
	if !reflect.DeepEqual(whole, backend) {
		t.Error("backend does not hold the whole secret as one JSON object")
	}

	// Four secrets over two paths: two fetches, and one Vault read of the
	// path that three secrets share.
	if n := vaultMetric(s, "phase_sidecar_source_requests_total", "source=vault", "result=success"); n != 2 {
		t.Errorf("source_requests_total{vault,success} = %v after the first sync of 4 secrets over 2 paths, want 2", n)
	}
	if n := v.auditReads(t, "secret/data/phase/backend"); n != 1 {
		t.Errorf("Vault saw %d reads of secret/data/phase/backend for three secrets, want 1", n)
	}
	if code, _ := s.get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d", code)
	}
	st := vaultStatus(t, s)
	for _, name := range []string{"SECRET_KEY", "DATABASE_PASSWORD", "BACKEND", "FRONTEND"} {
		if st[name].Version != "1" || !st[name].Written {
			t.Errorf("status of %s: version %q written %v, want KV version 1 written", name, st[name].Version, st[name].Written)
		}
	}
	want := []string{filepath.Join(out, "frontend_api.token"), filepath.Join(out, "frontend_session_key")}
	if got := st["FRONTEND"].Files; !reflect.DeepEqual(got, want) {
		t.Errorf("status files of FRONTEND = %q, want %q", got, want)
	}
	// env names the plain targets and says how the split one expands.
	code, env := runCmd(t, "env", "--config", cfg)
	for _, want := range []string{"BACKEND_FILE=" + filepath.Join(out, "backend"), "SECRET_KEY_FILE=" + filepath.Join(out, "secret_key"), "FRONTEND_<KEY>_FILE"} {
		if code != 0 || !strings.Contains(env, want) {
			t.Errorf("env (exit %d) lacks %q:\n%s", code, want, env)
		}
	}
}

// testVaultRotation: a new KV version reaches both fields of the path with
// one SIGHUP; a pinned version stays.
func testVaultRotation(t *testing.T, v *vaultServer) {
	out := shm(t)
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	app := startCounter(t, "-pid-file", pidFile)
	v.kvPut(t, "phase/rotate", map[string]any{"a": value("a1"), "b": value("b1")})
	_, src := v.approle(t, `path "secret/data/phase/rotate" { capabilities = ["read"] }`)
	cfg, addr := writeConfig(t, out, fmt.Sprintf(`refresh: 1h
secrets:
  - name: ROT_A
    ref: "vault://secret/phase/rotate#a"
    refresh: 1s
  - name: ROT_B
    ref: "vault://secret/phase/rotate#b"
    refresh: 1s
  - name: PINNED
    ref: "vault://secret/phase/rotate?version=1#a"
    refresh: 1s
reload:
  signal:
    pid_file: %s
  coalesce: 200ms
  # The app runs before the first sync: auto would tell it once then.
  on_initial_sync: never
%s`, pidFile, src))
	s := start(t, cfg, addr)
	s.waitReady()
	if n := v.kvPut(t, "phase/rotate", map[string]any{"a": value("a2"), "b": value("b2")}); n != 2 {
		t.Fatalf("new version %d, want 2", n)
	}
	waitFile(t, filepath.Join(out, "rot_a"), value("a2"))
	waitFile(t, filepath.Join(out, "rot_b"), value("b2"))
	eventually(t, "the reload to be reported", func() bool {
		return vaultMetric(s, "phase_sidecar_reloads_total", "method=signal", "result=success") == 1
	})
	eventually(t, "the SIGHUP to arrive", func() bool { return app.count("hup") >= 1 })

	// Two more cycles of both objects: nothing changes, nothing reloads.
	for range 2 {
		before := vaultStatus(t, s)
		eventually(t, "another sync cycle", func() bool {
			now := vaultStatus(t, s)
			return later(now["ROT_A"].LastSync, before["ROT_A"].LastSync) && later(now["PINNED"].LastSync, before["PINNED"].LastSync)
		})
	}
	if n := app.count("hup"); n != 1 {
		t.Errorf("the app got %d SIGHUPs for one new version, want 1", n)
	}
	if got := readFile(t, filepath.Join(out, "pinned")); got != value("a1") {
		t.Error("the pinned ?version=1 target changed")
	}
	st := vaultStatus(t, s)
	if st["ROT_A"].Version != "2" || st["ROT_B"].Version != "2" || st["PINNED"].Version != "1" {
		t.Errorf("status versions: ROT_A %q ROT_B %q PINNED %q, want 2 2 1", st["ROT_A"].Version, st["ROT_B"].Version, st["PINNED"].Version)
	}
}

func later(a, b *time.Time) bool { return a != nil && (b == nil || a.After(*b)) }

// testVaultPKI: a certificate and its key published as one bundle, renewed
// before NotAfter; a reader never sees a pair that does not match.
func testVaultPKI(t *testing.T, v *vaultServer) {
	out := shm(t)
	if err := v.root.Sys().Mount("pki", &api.MountInput{Type: "pki", Config: api.MountConfigInput{MaxLeaseTTL: "24h"}}); err != nil {
		t.Fatal(err)
	}
	v.write(t, "pki/root/generate/internal", map[string]any{"common_name": "phase e2e CA", "ttl": "24h"})
	v.write(t, "pki/roles/web", map[string]any{
		"allowed_domains": "example.test", "allow_subdomains": true,
		"ttl": "30s", "max_ttl": "30s", "key_type": "ec", "key_bits": 256,
	})
	_, src := v.approle(t, `path "pki/issue/web" { capabilities = ["create", "update"] }`)
	cfg, addr := writeConfig(t, out, `refresh: 1h
secrets:
  - name: TLS_CERT
    ref: "vault://pki/issue/web?common_name=app.example.test#certificate"
    bundle: tls
    file: tls.crt
  - name: TLS_KEY
    ref: "vault://pki/issue/web?common_name=app.example.test#private_key"
    bundle: tls
    file: tls.key
`+src)
	s := start(t, cfg, addr)
	s.waitReady()

	bundle := filepath.Join(out, "tls")
	first := readPair(t, bundle)
	if first == nil {
		t.Fatal("no readable certificate pair after /readyz")
	}
	if first.Subject.CommonName != "app.example.test" {
		t.Errorf("CN = %q", first.Subject.CommonName)
	}
	eventually(t, "the expiry metric", func() bool {
		return vaultMetric(s, "phase_sidecar_secret_expiry_timestamp_seconds", "secret=TLS_CERT", "source=vault") == float64(first.NotAfter.Unix())
	})

	// Poll the bundle until a new certificate appears; every pair read
	// must match. The bound is generous: past NotAfter the check below fails.
	deadline := first.NotAfter.Add(20 * time.Second)
	var next *x509.Certificate
	pairs := 0
	for {
		c := readPair(t, bundle)
		if t.Failed() {
			return
		}
		if c != nil {
			pairs++
			if c.SerialNumber.Cmp(first.SerialNumber) != 0 {
				next = c
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new certificate by NotAfter %v + 20s", first.NotAfter)
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Logf("read %d matching pairs before the new certificate", pairs)
	st := vaultStatus(t, s)["TLS_CERT"]
	if st.LastChange == nil || !st.LastChange.Before(first.NotAfter) {
		t.Errorf("the new certificate was published at %v, not before the old NotAfter %v", st.LastChange, first.NotAfter)
	}
	if !next.NotAfter.After(first.NotAfter) {
		t.Errorf("the new certificate ends %v, not after the old %v", next.NotAfter, first.NotAfter)
	}
	eventually(t, "the expiry metric to follow the new certificate", func() bool {
		return vaultMetric(s, "phase_sidecar_secret_expiry_timestamp_seconds", "secret=TLS_CERT", "source=vault") == float64(next.NotAfter.Unix())
	})
}

// readPair reads tls.crt and tls.key through one open of the bundle
// directory, as an app that opens the directory once would, and fails the
// test when they do not match. It returns nil when the version it opened
// was removed by a newer one while it read.
func readPair(t *testing.T, bundle string) *x509.Certificate {
	t.Helper()
	root, err := os.OpenRoot(bundle)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		t.Fatal(err)
	}
	defer root.Close()
	crt, err1 := root.ReadFile("tls.crt")
	key, err2 := root.ReadFile("tls.key")
	if errors.Is(err1, fs.ErrNotExist) || errors.Is(err2, fs.ErrNotExist) {
		return nil
	}
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Errorf("the bundle holds a certificate and key that do not match: %v", err)
		return nil
	}
	return pair.Leaf
}

// testVaultErrors: a path the policy now denies and a deleted secret are
// reported and counted; both files keep their last value.
func testVaultErrors(t *testing.T, v *vaultServer) {
	out := shm(t)
	v.kvPut(t, "phase/errors/denied", map[string]any{"v": value("denied1")})
	v.kvPut(t, "phase/errors/doomed", map[string]any{"v": value("doomed1")})
	allow := `path "secret/data/phase/errors/*" { capabilities = ["read"] }` + "\n"
	policy, src := v.approle(t, allow)
	cfg, addr := writeConfig(t, out, `refresh: 1h
secrets:
  - name: DENIED
    ref: "vault://secret/phase/errors/denied#v"
    refresh: 1s
  - name: DOOMED
    ref: "vault://secret/phase/errors/doomed#v"
    refresh: 1s
`+src)
	s := start(t, cfg, addr)
	s.waitReady()

	v.policy(t, policy, allow+`path "secret/data/phase/errors/denied" { capabilities = ["deny"] }`)
	if _, err := v.root.Logical().Delete("secret/metadata/phase/errors/doomed"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the denied read to be counted", func() bool {
		return vaultMetric(s, "phase_sidecar_secret_fetch_errors_total", "secret=DENIED", "source=vault", "reason=permission_denied") >= 1
	})
	eventually(t, "the deleted secret to be counted", func() bool {
		return vaultMetric(s, "phase_sidecar_secret_fetch_errors_total", "secret=DOOMED", "source=vault", "reason=not_found") >= 1
	})
	st := vaultStatus(t, s)
	if e := st["DENIED"].LastError; !strings.Contains(e, `"secret/phase/errors/denied"`) || !strings.Contains(e, "policies") || !strings.Contains(e, "MOUNT/data/PATH") {
		t.Errorf("status error of DENIED does not name the path and the policy: %q", e)
	}
	if e := st["DOOMED"].LastError; !strings.Contains(e, `"secret/phase/errors/doomed"`) || !strings.Contains(e, "not found") {
		t.Errorf("status error of DOOMED does not name the path: %q", e)
	}
	if got := readFile(t, filepath.Join(out, "denied")); got != value("denied1") {
		t.Error("the denied secret's file lost its last good value")
	}
	if got := readFile(t, filepath.Join(out, "doomed")); got != value("doomed1") {
		t.Error("the deleted secret's file lost its last good value")
	}
	if code, _ := s.get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d after fetch errors of written secrets, want 200", code)
	}
}

// testVaultToken: auth.method token with a token file.
func testVaultToken(t *testing.T, v *vaultServer) {
	out := shm(t)
	v.kvPut(t, "phase/token", map[string]any{"v": value("tok1")})
	policy := v.unique("phase-e2e-")
	v.policy(t, policy, `path "secret/data/phase/token" { capabilities = ["read"] }`)
	tok, err := v.root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	token := tok.Auth.ClientToken
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, addr := writeConfig(t, out, fmt.Sprintf(`secrets:
  - name: FROM_TOKEN
    ref: "vault://secret/phase/token#v"
sources:
  vault:
    address: %s
    auth:
      method: token
      token_file: %s
`, v.addr, tokenFile))
	s := start(t, cfg, addr)
	s.waitReady()
	if got := readFile(t, filepath.Join(out, "from_token")); got != value("tok1") {
		t.Error("from_token holds the wrong value")
	}
	_, metrics := s.get("/metrics")
	_, status := s.get("/v1/status")
	for where, text := range map[string]string{"log output": s.out.String(), "/metrics": metrics, "/v1/status": status} {
		if strings.Contains(text, token) {
			t.Errorf("the Vault token leaked into %s", where)
		}
	}
}

// testVaultOnceRefused: `once` against an address where nothing listens.
func testVaultOnceRefused(t *testing.T, v *vaultServer) {
	_, src := v.approle(t, `path "secret/data/phase/none" { capabilities = ["read"] }`)
	dead := "http://" + testenv.Addr(t) // nothing listens there
	src = strings.Replace(src, "address: "+v.addr, "address: "+dead, 1)
	cfg, _ := writeConfig(t, shm(t), `secrets:
  - name: UNREACHABLE
    ref: "vault://secret/phase/none#v"
`+src)
	code, outText := runCmd(t, "once", "--config", cfg)
	if code != 1 {
		t.Fatalf("once exit %d, want 1:\n%s", code, outText)
	}
	for _, want := range []string{"UNREACHABLE", "connection refused", strings.TrimPrefix(dead, "http://")} {
		if !strings.Contains(outText, want) {
			t.Errorf("once output lacks %q:\n%s", want, outText)
		}
	}
}
