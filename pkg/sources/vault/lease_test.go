package vault

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// startRedis runs redis-server on 127.0.0.1 with a password and returns
// its port once it accepts connections.
func startRedis(t *testing.T, password string) int {
	t.Helper()
	bin := testenv.Tool(t, "PHASE_TEST_REDIS", "redis-server")
	port := testenv.FreePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--requirepass", password, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "Ready to accept connections") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	if !<-ready {
		t.Fatal("redis-server exited before it was ready")
	}
	return port
}

// redisAuth checks user and password against redis with AUTH and PING.
func redisAuth(port int, user, password string) error {
	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, _ = fmt.Fprintf(conn, "AUTH %s %s\r\nPING\r\n", user, password)
	r := bufio.NewReader(conn)
	for _, want := range []string{"+OK", "+PONG"} {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != want {
			return fmt.Errorf("redis answered %q, want %q", strings.TrimSpace(line), want)
		}
	}
	return nil
}

// TestLeasedDatabaseCredentials reads credentials from Vault's database
// engine backed by a real redis: a live renewable lease is renewed (same
// credentials, later expiry), a fetch before the renewal point costs no
// request, and a revoked lease is replaced by new credentials.
func TestLeasedDatabaseCredentials(t *testing.T) {
	d := vaultDev(t)
	port := startRedis(t, "s3cr3t-canary-redis")
	mount := unique("db")
	d.enable(t, mount, "database", nil)
	d.write(t, mount+"/config/redis", map[string]any{
		"plugin_name":   "redis-database-plugin",
		"host":          "127.0.0.1",
		"port":          port,
		"username":      "default",
		"password":      "s3cr3t-canary-redis",
		"allowed_roles": "*",
	})
	d.write(t, mount+"/roles/app", map[string]any{
		"db_name":             "redis",
		"creation_statements": `["~*", "+@read", "+ping"]`,
		"default_ttl":         "1h",
		"max_ttl":             "24h",
	})

	clk := &clock{}
	s := newSource(t, d, Config{}, Options{Now: clk.now})
	c := countRequests(s)
	ctx := context.Background()
	ref := testenv.Ref(t, "vault://"+mount+"/creds/app")
	start := clk.now()
	obj, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	user, pass := testenv.Reveal(t, obj, "username"), testenv.Reveal(t, obj, "password")
	if err := redisAuth(port, user, pass); err != nil {
		t.Fatalf("the leased credentials do not work: %v", err)
	}
	if obj.Expiry.Before(start.Add(time.Hour-time.Minute)) || obj.Expiry.After(clk.now().Add(time.Hour)) {
		t.Errorf("Expiry = %v, want about an hour from %v", obj.Expiry, start)
	}
	if lo, hi := start.Add(36*time.Minute), clk.now().Add(44*time.Minute+time.Second); obj.RefreshAt.Before(lo) || obj.RefreshAt.After(hi) {
		t.Errorf("RefreshAt = %v, want within [%v, %v] (2/3 of the lease ±10%%)", obj.RefreshAt, lo, hi)
	}

	// Before the renewal point: the held object, no request.
	before := c.total.Load()
	again, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if c.total.Load() != before || again.Version != obj.Version {
		t.Errorf("early fetch made %d requests, version %q→%q", c.total.Load()-before, obj.Version, again.Version)
	}

	// At the renewal point: renewed, same credentials.
	clk.jump(obj.RefreshAt)
	renewed, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if n := c.count("PUT /v1/sys/leases/renew"); n != 1 {
		t.Errorf("lease renewals = %d, want 1", n)
	}
	if n := c.count("GET /v1/" + mount + "/creds/"); n != 1 {
		t.Errorf("credential reads = %d, want 1 (renewal must not read anew)", n)
	}
	if renewed.Version != obj.Version || testenv.Reveal(t, renewed, "password") != pass {
		t.Error("renewal changed the credentials")
	}
	if !renewed.Expiry.After(obj.Expiry) || !renewed.RefreshAt.After(obj.RefreshAt) {
		t.Errorf("renewal did not move Expiry/RefreshAt: %v/%v → %v/%v", obj.Expiry, obj.RefreshAt, renewed.Expiry, renewed.RefreshAt)
	}

	// A revoked lease: new credentials.
	s.mu.Lock()
	leaseID := s.leased[ref.Object()].leaseID
	s.mu.Unlock()
	if err := d.root.Sys().Revoke(leaseID); err != nil {
		t.Fatal(err)
	}
	clk.jump(renewed.RefreshAt)
	fresh, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Version == obj.Version || testenv.Reveal(t, fresh, "username") == user {
		t.Error("a revoked lease was not replaced by new credentials")
	}
	if err := redisAuth(port, testenv.Reveal(t, fresh, "username"), testenv.Reveal(t, fresh, "password")); err != nil {
		t.Errorf("the new credentials do not work: %v", err)
	}
}

// TestPKIBundle issues a certificate bundle and issues a new one at the
// renewal point, before NotAfter.
func TestPKIBundle(t *testing.T) {
	d := vaultDev(t)
	mount := unique("pki")
	d.enable(t, mount, "pki", nil)
	d.write(t, mount+"/root/generate/internal", map[string]any{"common_name": "phase test CA", "ttl": "24h"})
	d.write(t, mount+"/roles/web", map[string]any{"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "1h"})

	clk := &clock{}
	s := newSource(t, d, Config{}, Options{Now: clk.now})
	c := countRequests(s)
	ctx := context.Background()
	ref := testenv.Ref(t, "vault://"+mount+"/issue/web?common_name=app.example.com&ttl=10m")
	start := clk.now()
	obj, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !obj.Expands() {
		t.Error("a PKI object must expand into its fields")
	}
	cert := checkBundle(t, obj, "app.example.com")
	if !obj.Expiry.Equal(cert.NotAfter) {
		t.Errorf("Expiry = %v, want NotAfter %v", obj.Expiry, cert.NotAfter)
	}
	life := cert.NotAfter.Sub(start)
	if lo, hi := start.Add(life*6/10), clk.now().Add(life*3/4); obj.RefreshAt.Before(lo) || obj.RefreshAt.After(hi) {
		t.Errorf("RefreshAt = %v, want within [%v, %v]", obj.RefreshAt, lo, hi)
	}

	// Members fetched again before the renewal point share the bundle.
	before := c.total.Load()
	for _, field := range []string{"certificate", "private_key", "ca_chain"} {
		r := ref
		r.Field = field
		again, err := s.Fetch(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if again.Version != obj.Version {
			t.Errorf("%s: a new certificate before the renewal point", field)
		}
	}
	if n := c.total.Load() - before; n != 0 {
		t.Errorf("early fetches made %d requests", n)
	}

	clk.jump(obj.RefreshAt)
	next, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if next.Version == obj.Version {
		t.Fatal("no new certificate at the renewal point")
	}
	if !clk.now().Before(cert.NotAfter) {
		t.Error("renewed after NotAfter")
	}
	checkBundle(t, next, "app.example.com")
}

// checkBundle checks that the key matches the certificate and the chain
// verifies it.
func checkBundle(t *testing.T, obj sources.Object, cn string) *x509.Certificate {
	t.Helper()
	certPEM, keyPEM := testenv.Reveal(t, obj, "certificate"), testenv.Reveal(t, obj, "private_key")
	if _, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM)); err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	block, _ := pem.Decode([]byte(certPEM))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != cn {
		t.Errorf("CN = %q, want %q", cert.Subject.CommonName, cn)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(testenv.Reveal(t, obj, "ca_chain"))) {
		t.Fatal("ca_chain holds no certificate")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: cn}); err != nil {
		t.Errorf("the chain does not verify the certificate: %v", err)
	}
	return cert
}

// TestPKIParamsOnlyForIssue checks that PKI query keys on other paths are
// refused with a message.
func TestPKIParamsOnlyForIssue(t *testing.T) {
	d := vaultDev(t)
	mount := unique("kv")
	d.enable(t, mount, "kv", map[string]string{"version": "1"})
	d.write(t, mount+"/app", map[string]any{"k": "v"})
	s := newSource(t, d, Config{}, Options{})
	_, err := s.Fetch(context.Background(), testenv.Ref(t, "vault://"+mount+"/app?common_name=x"))
	if err == nil || !strings.Contains(err.Error(), "PKI issue paths") {
		t.Errorf("err = %v", err)
	}
}

// TestLeaseNearMaxTTL checks that a lease whose renewals are capped by its
// max TTL is replaced by a new read before it expires.
func TestLeaseNearMaxTTL(t *testing.T) {
	d := vaultDev(t)
	port, ref := redisRole(t, d, "4s", "5s")
	clk := &clock{}
	s := newSource(t, d, Config{}, Options{Now: clk.now})
	c := countRequests(s)
	first, err := s.Fetch(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	ev := events(s)
	// Renew at each renewal point until Vault's max TTL caps the grant
	// (whole seconds: 1s < 4s/3); Vault's clock is real, so this takes
	// about four seconds.
	obj := first
	deadline := time.Now().Add(time.Minute)
	for obj.Version == first.Version {
		if time.Now().After(deadline) {
			t.Fatal("the lease was never replaced")
		}
		time.Sleep(100 * time.Millisecond)
		clk.jump(obj.RefreshAt)
		if obj, err = s.Fetch(context.Background(), ref); err != nil {
			t.Fatalf("fetch near max TTL: %v", err)
		}
	}
	if n := c.count("PUT /v1/sys/leases/renew"); n == 0 {
		t.Error("no renewal before the new read")
	}
	select {
	case e := <-ev:
		if e != "lease-capped" {
			t.Errorf("event %q, want lease-capped", e)
		}
	default:
		t.Error("replaced for another reason than a capped renewal")
	}
	if err := redisAuth(port, testenv.Reveal(t, obj, "username"), testenv.Reveal(t, obj, "password")); err != nil {
		t.Errorf("the new credentials do not work: %v", err)
	}
}
