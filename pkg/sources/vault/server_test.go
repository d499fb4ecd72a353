package vault

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
)

// The integration tests share one Vault dev server, started on first use;
// each test mounts engines under names of its own.

const rootToken = servers.DefaultVaultToken

// devServer is a dev server and a root client for it.
type devServer struct {
	addr   string // 127.0.0.1:PORT
	root   *api.Client
	caCert string // with TLS
}

var (
	shared    servers.Shared
	sharedMu  sync.Mutex
	sharedDev *devServer
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

// vaultDev returns the shared dev server.
func vaultDev(t testing.TB) *devServer {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedDev == nil {
		st := shared.T(t)
		sharedDev = newDevServer(servers.Vault(st, st.TempDir(), servers.VaultOptions{}))
	}
	return sharedDev
}

// ownVaultDev starts a dev server for one test (one it may seal).
func ownVaultDev(t testing.TB, o servers.VaultOptions) *devServer {
	t.Helper()
	return newDevServer(servers.Vault(t, t.TempDir(), o))
}

func newDevServer(v *servers.VaultServer) *devServer {
	return &devServer{addr: v.HostPort, root: v.Root, caCert: v.CACert}
}

var mountSeq atomic.Int64

// unique returns a fresh name with prefix, for mounts and roles.
func unique(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, mountSeq.Add(1))
}

// write is a root write that must succeed. A fresh KV v2 mount answers
// "upgrading" for a moment, so writes are retried until the server accepts.
func (d *devServer) write(t testing.TB, path string, data map[string]any) *api.Secret {
	t.Helper()
	for attempt := 0; ; attempt++ {
		sec, err := d.root.Logical().Write(path, data)
		if err == nil {
			return sec
		}
		if attempt < 50 && strings.Contains(err.Error(), "upgrad") {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		t.Fatalf("write %s: %v", path, err)
	}
}

func (d *devServer) enable(t testing.TB, path, kind string, options map[string]string) {
	t.Helper()
	err := d.root.Sys().Mount(path, &api.MountInput{Type: kind, Options: options,
		Config: api.MountConfigInput{MaxLeaseTTL: "87600h"}})
	if err != nil {
		t.Fatalf("mount %s (%s): %v", path, kind, err)
	}
}

func (d *devServer) enableAuth(t testing.TB, path, kind string) {
	t.Helper()
	if err := d.root.Sys().EnableAuthWithOptions(path, &api.EnableAuthOptions{Type: kind}); err != nil {
		t.Fatalf("enable auth %s (%s): %v", path, kind, err)
	}
}

// policy creates a policy granting read on each path pattern.
func (d *devServer) policy(t testing.TB, paths ...string) string {
	t.Helper()
	name := unique("pol")
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "path %q { capabilities = [\"read\", \"create\", \"update\"] }\n", p)
	}
	if err := d.root.Sys().PutPolicy(name, b.String()); err != nil {
		t.Fatal(err)
	}
	return name
}

// childToken creates a token with policies.
func (d *devServer) childToken(t testing.TB, ttl string, policies ...string) string {
	t.Helper()
	sec, err := d.root.Auth().Token().Create(&api.TokenCreateRequest{Policies: policies, TTL: ttl, NoParent: true})
	if err != nil {
		t.Fatal(err)
	}
	return sec.Auth.ClientToken
}

// clock is a movable test clock: real time plus an offset.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// jump moves the clock to to.
func (c *clock) jump(to time.Time) { c.off.Store(int64(time.Until(to))) }

// newSource builds a Source on d with cfg (the address filled in). Without
// an auth method it uses the root token through VAULT_TOKEN.
func newSource(t testing.TB, d *devServer, cfg Config, o Options) *Source {
	t.Helper()
	cfg.Address = "http://" + d.addr
	if o.Env == nil {
		o.Env = func(k string) string {
			if k == "VAULT_TOKEN" && cfg.Auth.Method == "" {
				return rootToken
			}
			return ""
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testWriter sends log lines to t.Log, and fails the test when one holds a
// canary value.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	line := string(p)
	for _, c := range canaries {
		if strings.Contains(line, c) {
			w.t.Errorf("a log line holds a secret value: %s", line)
		}
	}
	w.t.Log(strings.TrimRight(line, "\n"))
	return len(p), nil
}

// canaries are secret values the tests store; none may reach a log or an
// error string.
var canaries = []string{"s3cr3t-canary", rootToken}

func checkNoCanary(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, c := range canaries {
		if strings.Contains(err.Error(), c) {
			t.Errorf("error holds a secret value: %v", err)
		}
	}
}

// counter counts the HTTP requests a Source makes, by method and path.
type counter struct {
	rt    http.RoundTripper
	mu    sync.Mutex
	paths map[string]int
	total atomic.Int64
}

func countRequests(s *Source) *counter {
	c := &counter{rt: s.http.Transport, paths: map[string]int{}}
	s.http.Transport = c
	return c
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.total.Add(1)
	c.mu.Lock()
	c.paths[r.Method+" "+r.URL.Path]++
	c.mu.Unlock()
	return c.rt.RoundTrip(r)
}

func (c *counter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.paths {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// events records the auth hook's events for tests to wait on.
func events(s *Source) <-chan string {
	ch := make(chan string, 100)
	s.onEvent = func(e string) { ch <- e }
	return ch
}

// waitEvent waits for event name, discarding others; it fails after a
// generous bound so that a broken test does not hang the suite.
func waitEvent(t testing.TB, ch <-chan string, name string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case e := <-ch:
			if e == name {
				return
			}
		case <-deadline:
			t.Fatalf("no %q event", name)
		}
	}
}

func runSource(t testing.TB, s *Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
