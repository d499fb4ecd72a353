package vault

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// redisRole sets up Vault's database engine on a real redis with a role of
// the given lease TTLs; it returns the redis port and the creds ref.
func redisRole(t *testing.T, d *devServer, ttl, maxTTL string) (int, sources.Ref) {
	t.Helper()
	port := startRedis(t, "s3cr3t-canary-redis")
	mount := unique("db")
	d.enable(t, mount, "database", nil)
	d.write(t, mount+"/config/redis", map[string]any{
		"plugin_name": "redis-database-plugin", "host": "127.0.0.1", "port": port,
		"username": "default", "password": "s3cr3t-canary-redis", "allowed_roles": "*",
	})
	d.write(t, mount+"/roles/app", map[string]any{
		"db_name": "redis", "creation_statements": `["~*", "+@read", "+ping"]`,
		"default_ttl": ttl, "max_ttl": maxTTL,
	})
	return port, testenv.Ref(t, "vault://"+mount+"/creds/app")
}

// wakes records the refs a source asks the engine to fetch.
type wakes struct {
	mu   sync.Mutex
	refs []string
	ch   chan struct{}
}

func watch(t *testing.T, s *Source) *wakes {
	t.Helper()
	w := &wakes{ch: make(chan struct{}, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = s.Watch(ctx, nil, func(r sources.Ref) {
			w.mu.Lock()
			w.refs = append(w.refs, r.Object())
			w.mu.Unlock()
			w.ch <- struct{}{}
		})
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	// Watch has stored its callback once a wake can reach it.
	for {
		s.mu.Lock()
		ok := s.wake != nil
		s.mu.Unlock()
		if ok {
			return w
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLeasesFollowTheTokenRollover: when the sidecar's token nears its max
// TTL and it logs in again, every lease the old token created is asked for
// again at once (Vault revokes them with the old token), read anew under the
// new token before the old one expires, and the new credentials work after
// the old token is gone.
func TestLeasesFollowTheTokenRollover(t *testing.T) {
	d := vaultDev(t)
	port, ref := redisRole(t, d, "1h", "24h")
	pol := d.policy(t, ref.Path)
	auth := approle(t, d, pol, map[string]any{"token_ttl": "4s", "token_max_ttl": "8s"})
	s := newSource(t, d, Config{Auth: auth}, Options{})
	ev := events(s)
	w := watch(t, s)
	ctx := context.Background()
	first, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	oldUser := testenv.Reveal(t, first, "username")
	runSource(t, s)

	waitEvent(t, ev, "orphaned") // the second login
	select {
	case <-w.ch:
	case <-time.After(time.Minute):
		t.Fatal("no wake for the orphaned lease")
	}
	w.mu.Lock()
	if len(w.refs) != 1 || w.refs[0] != ref.Object() {
		t.Errorf("woken refs = %v, want [%s]", w.refs, ref.Object())
	}
	w.mu.Unlock()
	next, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	newUser := testenv.Reveal(t, next, "username")
	if newUser == oldUser {
		t.Fatal("the lease of the replaced token was kept")
	}
	// Once the old token has expired (8 s max TTL), its credentials are
	// gone and the new ones still work.
	deadline := time.Now().Add(30 * time.Second)
	for redisAuth(port, oldUser, testenv.Reveal(t, first, "password")) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the old token's credentials outlived it; the test proves nothing")
		}
		time.Sleep(200 * time.Millisecond)
	}
	cur, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := redisAuth(port, testenv.Reveal(t, cur, "username"), testenv.Reveal(t, cur, "password")); err != nil {
		t.Errorf("after the old token expired, the held credentials fail: %v", err)
	}
}

// TestRevokedTokenNoticed: an administrator's revoke-prefix on the auth
// mount revokes the sidecar's token and every lease it created; while the
// engine only reads the held lease, the token check notices it and the
// lease is read anew under a new login.
func TestRevokedTokenNoticed(t *testing.T) {
	d := vaultDev(t)
	port, ref := redisRole(t, d, "1h", "24h")
	pol := d.policy(t, ref.Path)
	auth := approle(t, d, pol, map[string]any{"token_ttl": "1h", "token_max_ttl": "24h"})
	s := newSource(t, d, Config{Auth: auth}, Options{TokenCheck: time.Millisecond})
	ev := events(s)
	ctx := context.Background()
	first, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.root.Logical().Write("sys/leases/revoke-prefix/auth/"+auth.Mount+"/", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	next, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ev, "revoked")
	if testenv.Reveal(t, next, "username") == testenv.Reveal(t, first, "username") {
		t.Fatal("credentials of a revoked token were kept")
	}
	if err := redisAuth(port, testenv.Reveal(t, next, "username"), testenv.Reveal(t, next, "password")); err != nil {
		t.Errorf("the new credentials do not work: %v", err)
	}
}

// TestCappedLeaseReplacedWithRoom: a renewal cut short by the max TTL is
// not renewed again: the lease is replaced at the lead point, which leaves
// the reload's time and the margin before its end.
func TestCappedLeaseReplacedWithRoom(t *testing.T) {
	d := vaultDev(t)
	_, ref := redisRole(t, d, "6s", "7s")
	ref.Lead = sources.Lead{Reload: time.Second}
	clk := &clock{}
	s := newSource(t, d, Config{}, Options{Now: clk.now})
	ev := events(s)
	ctx := context.Background()
	first, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(first.RefreshAt)) // ~4 s: the renewal grants ~4 s of 6
	renewed, err := s.Fetch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ev, "lease-capped")
	if renewed.Version != first.Version {
		t.Fatal("replaced at the capped renewal, not at the lead point")
	}
	room := renewed.Expiry.Sub(renewed.RefreshAt)
	if want := time.Second + renewed.Expiry.Sub(clk.now())/10; room < want-50*time.Millisecond {
		t.Errorf("refetch %v before the end, want at least the lead %v", room, want)
	}
}

// TestRateLimitQuotaRetryAfter: a Vault rate-limit quota answers 429 with
// Retry-After; the error is throttled (source-level, for the engine's
// breaker) and carries the wait.
func TestRateLimitQuotaRetryAfter(t *testing.T) {
	d := ownVaultDev(t, servers.VaultOptions{})
	mount := unique("kv")
	d.enable(t, mount, "kv", map[string]string{"version": "1"})
	d.write(t, mount+"/app", map[string]any{"k": "v"})
	// Vault sends Retry-After only when the operator enables the headers.
	d.write(t, "sys/quotas/config", map[string]any{"enable_rate_limit_response_headers": true})
	d.write(t, "sys/quotas/rate-limit/"+unique("q"), map[string]any{"path": mount + "/", "rate": 1, "interval": "30s", "block_interval": "30s"})
	s := newSource(t, d, Config{}, Options{})
	ref := testenv.Ref(t, "vault://"+mount+"/app#k")
	var err error
	for range 5 {
		if _, err = s.Fetch(context.Background(), ref); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("the quota never answered 429")
	}
	if sources.Reason(err) != "throttled" || !sources.SourceLevel(err) {
		t.Errorf("err = %v (reason %s), want throttled", err, sources.Reason(err))
	}
	if ra := sources.RetryAfter(err); ra <= 0 || ra > 31*time.Second {
		t.Errorf("Retry-After = %v, want the quota's block interval (≤ 30s)", ra)
	}
}

// TestClientRateLimit: sources.vault.rate_limit spaces every request,
// logins included: 6 requests at 2/s with a burst of 1 take at least 2.5 s
// (a lower bound only; a slow machine cannot make it fail).
func TestClientRateLimit(t *testing.T) {
	d := vaultDev(t)
	mount := unique("kv")
	d.enable(t, mount, "kv", map[string]string{"version": "1"})
	d.write(t, mount+"/app", map[string]any{"k": "v"})
	s := newSource(t, d, Config{RateLimit: 2, RateBurst: 1, KVVersion: 1}, Options{})
	c := countRequests(s)
	ref := testenv.Ref(t, "vault://"+mount+"/app#k")
	start := time.Now()
	for c.total.Load() < 6 {
		if _, err := s.Fetch(context.Background(), ref); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(start); el < 2500*time.Millisecond {
		t.Errorf("%d requests in %v at 2/s, burst 1", c.total.Load(), el)
	}
}

// TestMountLookedUpOnce: concurrent first fetches under one mount share one
// sys/internal/ui/mounts lookup (a fleet's start burst).
func TestMountLookedUpOnce(t *testing.T) {
	d := vaultDev(t)
	mount := unique("kv")
	d.enable(t, mount, "kv", map[string]string{"version": "2"})
	for i := range 8 {
		d.write(t, mount+"/data/app"+string(rune('0'+i)), map[string]any{"data": map[string]any{"k": "v"}})
	}
	s := newSource(t, d, Config{}, Options{})
	c := countRequests(s)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Fetch(context.Background(), testenv.Ref(t, "vault://"+mount+"/app"+string(rune('0'+i))+"#k")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := c.count("GET /v1/sys/internal/ui/mounts/"); n != 1 {
		t.Errorf("%d mount lookups for 8 concurrent first fetches, want 1", n)
	}
}
