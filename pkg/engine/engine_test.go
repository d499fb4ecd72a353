package engine

import (
	"context"
	"errors"
	"fmt"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// fakeSource is a unit-test source made of function fields.
type fakeSource struct {
	mu    sync.Mutex
	calls map[string]int
	fetch func(ref sources.Ref) (sources.Object, error)
}

func (f *fakeSource) Fetch(_ context.Context, ref sources.Ref) (sources.Object, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[ref.Object()]++
	f.mu.Unlock()
	return f.fetch(ref)
}

func (f *fakeSource) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

// fakeBatcher records batch calls.
type fakeBatcher struct {
	fakeSource
	batches [][]string
}

func (f *fakeBatcher) FetchBatch(ctx context.Context, refs []sources.Ref) []sources.Result {
	var keys []string
	out := make([]sources.Result, len(refs))
	for i, r := range refs {
		keys = append(keys, r.Object())
		obj, err := f.fetch(r)
		out[i] = sources.Result{Object: obj, Err: err}
	}
	f.mu.Lock()
	f.batches = append(f.batches, keys)
	f.mu.Unlock()
	return out
}

type fixture struct {
	dir     string
	cfg     *config.Config
	m       *metrics.Metrics
	changes chan Change
	latency time.Duration // Options.ReloadLatency
}

func newFixture(t *testing.T, secrets ...config.Secret) *fixture {
	t.Helper()
	dir := t.TempDir()
	for i := range secrets {
		s := &secrets[i]
		if s.File == "" {
			s.File = strings.ToLower(s.Name)
		}
		if s.Mode == 0 {
			s.Mode = 0o440
		}
		s.UID, s.GID = -1, -1
		s.Reload = true
	}
	return &fixture{
		dir: dir,
		cfg: &config.Config{
			Output:      config.Output{Dir: dir, AllowDisk: true, Mode: 0o440, UID: -1, GID: -1},
			Refresh:     time.Minute,
			Concurrency: 4,
			Secrets:     secrets,
		},
		m:       metrics.New(prometheus.NewRegistry(), "test", "test"),
		changes: make(chan Change, 100),
	}
}

func (f *fixture) engine(t *testing.T, srcs map[string]sources.Source) *Engine {
	t.Helper()
	d, err := sink.Open(sink.Options{Dir: f.dir, AllowDisk: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	e, err := New(Options{Config: f.cfg, Sources: srcs, Sink: d, Metrics: f.m, ReloadLatency: f.latency, OnChange: func(c Change) { f.changes <- c }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (f *fixture) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func kv(fields map[string]string) sources.Object {
	o := sources.Object{Fields: map[string]secret.Value{}, Version: "1"}
	for k, v := range fields {
		o.Fields[k] = secret.FromString(v)
	}
	return o
}

func TestOneFetchPerObject(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "A", Ref: testenv.Ref(t, "vault://secret/app#a"), Required: true},
		config.Secret{Name: "B", Ref: testenv.Ref(t, "vault://secret/app#b"), Required: true},
		config.Secret{Name: "C", Ref: testenv.Ref(t, "vault://secret/other#c"), Required: true},
	)
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"a": "1", "b": "2", "c": "3"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	if err := e.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := src.count("vault://secret/app"); n != 1 {
		t.Errorf("secret/app fetched %d times, want 1", n)
	}
	for name, want := range map[string]string{"a": "1", "b": "2", "c": "3"} {
		if got := f.read(t, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

func TestBatching(t *testing.T) {
	var secrets []config.Secret
	for _, n := range []string{"A", "B", "C"} {
		secrets = append(secrets, config.Secret{Name: n, Ref: testenv.Ref(t, "aws-sm://prod/"+n), Required: true})
	}
	f := newFixture(t, secrets...)
	src := &fakeBatcher{fakeSource: fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return sources.Object{Value: secret.FromString(ref.Path), Version: "v1"}, nil
	}}}
	e := f.engine(t, map[string]sources.Source{sources.AWSSM: src})
	if err := e.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(src.batches) != 1 || len(src.batches[0]) != 3 {
		t.Fatalf("batches = %v, want one batch of 3", src.batches)
	}
	if got := f.read(t, "b"); got != "prod/B" {
		t.Errorf("b = %q", got)
	}
}

func TestErrorKeepsLastGoodFile(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "A", Ref: testenv.Ref(t, "vault://secret/app#a"), Required: true})
	var fail bool
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		if fail {
			return sources.Object{}, errors.New("vault: read: 503: " + sources.ErrUnavailable.Error())
		}
		return kv(map[string]string{"a": "good"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	ctx := context.Background()
	if err := e.Once(ctx); err != nil {
		t.Fatal(err)
	}
	fail = true
	_ = e.Once(ctx)
	if got := f.read(t, "a"); got != "good" {
		t.Errorf("after a failed fetch a = %q, want the last good value", got)
	}
	if v := testutil.ToFloat64(f.m.SecretFetchErrors.WithLabelValues("A", "vault", "other")); v != 1 {
		t.Errorf("fetch errors = %v, want 1", v)
	}
	st := e.Status()[0]
	if !st.Written || st.LastError == "" {
		t.Errorf("status = %+v, want written with last_error", st)
	}
}

func TestReadiness(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "REQ", Ref: testenv.Ref(t, "vault://secret/req#a"), Required: true},
		config.Secret{Name: "OPT", Ref: testenv.Ref(t, "vault://secret/opt#a"), Required: false},
	)
	var reqMissing = true
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		if ref.Path == "secret/opt" || reqMissing {
			return sources.Object{}, errors.Join(errors.New("vault: read "+ref.Path), sources.ErrNotFound)
		}
		return kv(map[string]string{"a": "x"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	err := e.Once(context.Background())
	if err == nil || !strings.Contains(err.Error(), "REQ") || strings.Contains(err.Error(), "OPT") {
		t.Fatalf("Once = %v, want an error naming REQ only", err)
	}
	if got := e.Missing(); len(got) != 1 || got[0] != "REQ" {
		t.Fatalf("Missing = %v", got)
	}
	reqMissing = false
	if err := e.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Ready():
	default:
		t.Fatal("not ready after the required secret was written")
	}
}

func TestChangesAndInitial(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "A", Ref: testenv.Ref(t, "vault://secret/app#a"), Required: true},
		config.Secret{Name: "B", Ref: testenv.Ref(t, "vault://secret/app#b"), Required: true},
	)
	val := "1"
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"a": val, "b": "fixed"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	ctx := context.Background()
	_ = e.Once(ctx)
	c := <-f.changes
	if !c.Initial || len(c.Secrets) != 2 {
		t.Fatalf("first change = %+v, want initial with 2 secrets", c)
	}
	_ = e.Once(ctx)
	select {
	case c := <-f.changes:
		t.Fatalf("unchanged values reported a change: %+v", c)
	default:
	}
	val = "2"
	_ = e.Once(ctx)
	c = <-f.changes
	if c.Initial || len(c.Secrets) != 1 || c.Secrets[0] != "A" {
		t.Fatalf("change = %+v, want A, not initial", c)
	}
}

// TestChangeTargets: a change names the secrets whose files changed (the
// files are on disk by then); formerly it also listed the paths, which
// nothing read. Was: a change names the files that changed by absolute
// path, alongside the secrets.
func TestChangeTargets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []config.Secret
		// Values before and after; fields of one object per source path.
		before, after map[string]map[string]string
		initialWant   []string // targets of the first sync, relative to the output directory
		secretsWant   []string
		targetsWant   []string // of the second sync
	}{
		{
			name: "one of two secrets of an object",
			secrets: []config.Secret{
				{Name: "A", Ref: testenv.Ref(t, "vault://secret/app#a"), Required: true},
				{Name: "B", Ref: testenv.Ref(t, "vault://secret/app#b"), Required: true},
			},
			before:      map[string]map[string]string{"secret/app": {"a": "1", "b": "x"}},
			after:       map[string]map[string]string{"secret/app": {"a": "2", "b": "x"}},
			initialWant: []string{"a", "b"},
			secretsWant: []string{"A"},
			targetsWant: []string{"a"},
		},
		{
			name:        "expanding secret: only the files whose bytes changed",
			secrets:     []config.Secret{{Name: "REDIS", Ref: testenv.Ref(t, "file:///k8s/redis/"), Required: true}},
			before:      map[string]map[string]string{"/k8s/redis/": {"password": "p1", "user": "u"}},
			after:       map[string]map[string]string{"/k8s/redis/": {"password": "p2", "user": "u"}},
			initialWant: []string{"redis_password", "redis_user"},
			secretsWant: []string{"REDIS"},
			targetsWant: []string{"redis_password"},
		},
		{
			name: "bundle: every member, one of which changed",
			secrets: []config.Secret{
				{Name: "TLS_CERT", File: "tls.crt", Bundle: "tls", Ref: testenv.Ref(t, "file:///certs/cert.pem"), Required: true},
				{Name: "TLS_KEY", File: "tls.key", Bundle: "tls", Ref: testenv.Ref(t, "file:///certs/key.pem"), Required: true},
			},
			before:      map[string]map[string]string{"/certs/cert.pem": {"": "c1"}, "/certs/key.pem": {"": "k"}},
			after:       map[string]map[string]string{"/certs/cert.pem": {"": "c2"}, "/certs/key.pem": {"": "k"}},
			initialWant: []string{"tls/tls.crt", "tls/tls.key"},
			secretsWant: []string{"TLS_CERT", "TLS_KEY"},
			targetsWant: []string{"tls/tls.crt", "tls/tls.key"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.secrets...)
			values := tc.before
			src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
				fields := values[ref.Path]
				if v, ok := fields[""]; ok {
					return sources.Object{Value: secret.FromString(v)}, nil
				}
				return kv(fields), nil
			}}
			e := f.engine(t, map[string]sources.Source{tc.secrets[0].Ref.Kind: src})
			if err := e.Once(context.Background()); err != nil {
				t.Fatal(err)
			}
			<-f.changes
			for _, n := range tc.initialWant {
				if _, err := os.Stat(filepath.Join(f.dir, n)); err != nil {
					t.Errorf("first sync: target %s: %v", n, err)
				}
			}
			values = tc.after
			if err := e.Once(context.Background()); err != nil {
				t.Fatal(err)
			}
			c := <-f.changes
			slices.Sort(c.Secrets)
			if !slices.Equal(c.Secrets, tc.secretsWant) {
				t.Fatalf("change = secrets %v, want %v", c.Secrets, tc.secretsWant)
			}
			for _, n := range tc.targetsWant {
				if _, err := os.Stat(filepath.Join(f.dir, n)); err != nil {
					t.Errorf("target %s: %v", n, err)
				}
			}
		})
	}
}

func TestBundleWrittenTogether(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "TLS_CERT", File: "tls.crt", Bundle: "tls", Ref: testenv.Ref(t, "file:///certs/cert.pem"), Required: true},
		config.Secret{Name: "TLS_KEY", File: "tls.key", Bundle: "tls", Ref: testenv.Ref(t, "file:///certs/key.pem"), Required: true},
	)
	gen := "1"
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return sources.Object{Value: secret.FromString(filepath.Base(ref.Path) + gen), Version: gen}, nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.File: src})
	if len(e.jobs) != 1 {
		t.Fatalf("bundle members planned as %d jobs, want 1", len(e.jobs))
	}
	_ = e.Once(context.Background())
	gen = "2"
	_ = e.Once(context.Background())
	if c, k := f.read(t, "tls/tls.crt"), f.read(t, "tls/tls.key"); c != "cert.pem2" || k != "key.pem2" {
		t.Fatalf("bundle = %q, %q", c, k)
	}
}

func TestBundleNotWrittenWhenAMemberFails(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "TLS_CERT", File: "tls.crt", Bundle: "tls", Ref: testenv.Ref(t, "file:///certs/cert.pem"), Required: true},
		config.Secret{Name: "TLS_KEY", File: "tls.key", Bundle: "tls", Ref: testenv.Ref(t, "file:///certs/key.pem"), Required: true},
	)
	gen, keyFails := "1", false
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		if keyFails && strings.HasSuffix(ref.Path, "key.pem") {
			return sources.Object{}, sources.ErrPermission
		}
		return sources.Object{Value: secret.FromString(filepath.Base(ref.Path) + gen)}, nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.File: src})
	_ = e.Once(context.Background())
	gen, keyFails = "2", true
	_ = e.Once(context.Background())
	if c := f.read(t, "tls/tls.crt"); c != "cert.pem1" {
		t.Fatalf("cert = %q: a new cert was published while its key failed", c)
	}
}

func TestExpandingObject(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "REDIS", Ref: testenv.Ref(t, "file:///k8s/redis/"), Required: true})
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"password": "p", "user name": "u"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.File: src})
	if err := e.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.read(t, "redis_password"); got != "p" {
		t.Errorf("redis_password = %q", got)
	}
	if got := f.read(t, "redis_user_name"); got != "u" {
		t.Errorf("redis_user_name = %q", got)
	}
	if st := e.Status()[0]; len(st.Files) != 2 {
		t.Errorf("status files = %v", st.Files)
	}
}

func TestNewline(t *testing.T) {
	for _, tc := range []struct{ in, policy, want string }{
		{"a\n", "keep", "a\n"},
		{"a\n", "", "a\n"},
		{"a\r\n\n", "strip", "a"},
		{"a", "add", "a\n"},
		{"a\n\n", "add", "a\n"},
		{"", "add", "\n"},
	} {
		if got := string(newline([]byte(tc.in), tc.policy)); got != tc.want {
			t.Errorf("newline(%q, %q) = %q, want %q", tc.in, tc.policy, got, tc.want)
		}
	}
}

func TestRefreshAtSchedulesLease(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "DB", Ref: testenv.Ref(t, "vault://database/creds/app#password"), Required: true})
	renewAt := time.Now().Add(10 * time.Second)
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		o := kv(map[string]string{"password": "x"})
		o.RefreshAt = renewAt
		o.Expiry = renewAt.Add(time.Minute)
		return o, nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	e.exportSecrets()
	e.runJobs(context.Background(), e.jobs, true)
	e.mu.Lock()
	due := e.jobs[0].due
	e.mu.Unlock()
	if !due.Equal(renewAt) {
		t.Fatalf("due = %v, want the lease's renewal point %v", due, renewAt)
	}
	if v := testutil.ToFloat64(f.m.SecretExpiry.WithLabelValues("DB", "vault")); v != float64(renewAt.Add(time.Minute).Unix()) {
		t.Errorf("expiry metric = %v", v)
	}
}

// fakeWatcher is a file-like source whose hints the test triggers.
type fakeWatcher struct {
	fakeSource
	wake    chan func(sources.Ref)
	recheck time.Duration // its sources.Rechecker bound
}

func (f *fakeWatcher) Recheck() time.Duration { return f.recheck }

func (f *fakeWatcher) Watch(ctx context.Context, refs []sources.Ref, wake func(sources.Ref)) error {
	f.wake <- wake
	<-ctx.Done()
	return nil
}

func TestRunHintAndShutdown(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "A", Ref: testenv.Ref(t, "file:///src/a"), Required: true})
	var mu sync.Mutex
	val := "1"
	src := &fakeWatcher{wake: make(chan func(sources.Ref), 1)}
	src.fetch = func(ref sources.Ref) (sources.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		return sources.Object{Value: secret.FromString(val), Version: val}, nil
	}
	e := f.engine(t, map[string]sources.Source{sources.File: src})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	wake := <-src.wake
	<-e.Ready()
	if c := <-f.changes; !c.Initial {
		t.Fatalf("first change not initial: %+v", c)
	}
	mu.Lock()
	val = "2"
	mu.Unlock()
	wake(testenv.Ref(t, "file:///src/a"))
	c := <-f.changes
	if c.Initial || c.Secrets[0] != "A" {
		t.Fatalf("change = %+v", c)
	}
	if got := f.read(t, "a"); got != "2" {
		t.Fatalf("a = %q after the hint", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil on cancellation", err)
	}
}

func TestUnavailableSource(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "A", Ref: testenv.Ref(t, "aws-ssm:///a"), Required: true})
	_, err := New(Options{Config: f.cfg, Sources: map[string]sources.Source{}, Metrics: f.m})
	if err == nil || !strings.Contains(err.Error(), "not available in this build/config") {
		t.Fatalf("New = %v", err)
	}
}

// failingSink fails the first n writes with ENOSPC, leaving nothing written,
// the way a full tmpfs does.
type failingSink struct {
	Sink
	mu    sync.Mutex
	fails int
}

func (f *failingSink) Write(file sink.File) (bool, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return false, fmt.Errorf("sink: write %q: no space left on the tmpfs: %w", file.Name, syscall.ENOSPC)
	}
	f.mu.Unlock()
	return f.Sink.Write(file)
}

func TestWriteErrorCountedAndRetried(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "A", Ref: testenv.Ref(t, "vault://secret/app#a"), Required: true})
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"a": "v"}), nil
	}}
	d, err := sink.Open(sink.Options{Dir: f.dir, AllowDisk: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs := &failingSink{Sink: d, fails: 1}
	e, err := New(Options{Config: f.cfg, Sources: map[string]sources.Source{sources.Vault: src}, Sink: fs, Metrics: f.m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	// The first write fails; the retry (backoff ≤ 1 s on attempt 1) succeeds.
	select {
	case <-e.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("the write was not retried")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := f.read(t, "a"); got != "v" {
		t.Fatalf("a = %q", got)
	}
	if v := testutil.ToFloat64(f.m.SecretWriteErrors.WithLabelValues("A", "vault")); v != 1 {
		t.Errorf("write errors = %v, want 1", v)
	}
}

func TestBundleNotWrittenWhenAMemberCannotBeSelected(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "TLS_CERT", File: "tls.crt", Bundle: "tls", Ref: testenv.Ref(t, "aws-sm://tls#cert"), Required: true},
		config.Secret{Name: "TLS_KEY", File: "tls.key", Bundle: "tls", Ref: testenv.Ref(t, "aws-sm://tls#key"), Required: true},
	)
	payload := `{"cert":"c1","key":"k1"}`
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return sources.Object{Value: secret.FromString(payload)}, nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.AWSSM: src})
	_ = e.Once(context.Background())
	payload = `{"cert":"c2"}` // the rotated secret lost its key
	_ = e.Once(context.Background())
	if c, k := f.read(t, "tls/tls.crt"), f.read(t, "tls/tls.key"); c != "c1" || k != "k1" {
		t.Fatalf("bundle = %q, %q: published without a member", c, k)
	}
}

func TestExpansionCollisions(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "REDIS_PASSWORD", Ref: testenv.Ref(t, "file:///plain"), Required: true},
		config.Secret{Name: "REDIS", Ref: testenv.Ref(t, "file:///k8s/redis/"), Required: true},
		config.Secret{Name: "DUP", Ref: testenv.Ref(t, "file:///k8s/dup/"), Required: false},
		config.Secret{Name: "DOTS", Ref: testenv.Ref(t, "file:///k8s/dots/"), Required: true},
	)
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		switch ref.Path {
		case "/plain":
			return sources.Object{Value: secret.FromString("plain")}, nil
		case "/k8s/redis/":
			return kv(map[string]string{"password": "from-dir"}), nil
		case "/k8s/dup/":
			return kv(map[string]string{"a b": "1", "a_b": "2"}), nil
		}
		return kv(map[string]string{"x..y": "dots"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.File: src})
	err := e.Once(context.Background())
	if err == nil || !strings.Contains(err.Error(), "REDIS ") || !strings.Contains(err.Error(), "which secret REDIS_PASSWORD writes") {
		t.Fatalf("Once = %v, want REDIS refused for colliding with REDIS_PASSWORD", err)
	}
	if got := f.read(t, "redis_password"); got != "plain" {
		t.Fatalf("redis_password = %q: an expansion overwrote a configured target", got)
	}
	for _, st := range e.Status() {
		if st.Name == "DUP" && !strings.Contains(st.LastError, "both map to") {
			t.Errorf("DUP error = %q", st.LastError)
		}
	}
	if got := f.read(t, "dots_x._y"); got != "dots" {
		t.Errorf("dots_x._y = %q", got)
	}
}

func TestInitialOnlyForNewTargets(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "A", Ref: testenv.Ref(t, "vault://secret/app#a"), Required: true})
	// A sidecar restarted next to a running app finds the old value on disk.
	if err := os.WriteFile(filepath.Join(f.dir, "a"), []byte("old"), 0o440); err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"a": "rotated while down"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	_ = e.Once(context.Background())
	if c := <-f.changes; c.Initial {
		t.Fatalf("change = %+v: a value that replaced an existing target must reload the app", c)
	}
}

func TestStaleAfterMaxStale(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "A", Ref: testenv.Ref(t, "vault://secret/a#a"), Required: true, MaxStale: time.Minute},
		config.Secret{Name: "B", Ref: testenv.Ref(t, "vault://secret/b#a"), Required: true}, // default: 3 × refresh
	)
	fail := false
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		if fail {
			return sources.Object{}, sources.ErrUnavailable
		}
		return kv(map[string]string{"a": "v"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	e.exportSecrets()
	_ = e.Once(context.Background())
	fail = true
	start := time.Now()
	for _, tc := range []struct {
		after          time.Duration
		aStale, bStale bool
	}{
		{30 * time.Second, false, false},
		{2 * time.Minute, true, false},
		{4 * time.Minute, true, true},
	} {
		e.now = func() time.Time { return start.Add(tc.after) }
		st := e.Status()
		if st[0].Stale != tc.aStale || st[1].Stale != tc.bStale {
			t.Errorf("after %v: stale = %v, %v; want %v, %v", tc.after, st[0].Stale, st[1].Stale, tc.aStale, tc.bStale)
		}
		want := map[bool]float64{false: 0, true: 1}[tc.aStale]
		if v := testutil.ToFloat64(f.m.SecretStale.WithLabelValues("A", "vault")); v != want {
			t.Errorf("after %v: stale gauge = %v, want %v", tc.after, v, want)
		}
	}
}

func TestExpansionNeverTakesABundleOrWritesHalf(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "X", Ref: testenv.Ref(t, "file:///k8s/x/"), Required: false},
		config.Secret{Name: "CERT", File: "tls.crt", Bundle: "x_b", Ref: testenv.Ref(t, "file:///cert"), Required: true},
		config.Secret{Name: "LONG", Ref: testenv.Ref(t, "file:///k8s/long/"), Required: false},
	)
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		switch ref.Path {
		case "/k8s/x/":
			return kv(map[string]string{"b": "would replace the bundle"}), nil
		case "/k8s/long/":
			return kv(map[string]string{"a": "1", strings.Repeat("n", 300): "2", "z": "3"}), nil
		}
		return sources.Object{Value: secret.FromString("cert")}, nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.File: src})
	_ = e.Once(context.Background())
	if got := f.read(t, "x_b/tls.crt"); got != "cert" {
		t.Fatalf("bundle member = %q", got)
	}
	for _, name := range []string{"long_a", "long_z"} {
		if _, err := os.Stat(filepath.Join(f.dir, name)); err == nil {
			t.Errorf("%s written although another field of LONG cannot be a file", name)
		}
	}
	for _, st := range e.Status() {
		switch st.Name {
		case "X":
			if !strings.Contains(st.LastError, "which secret CERT writes") {
				t.Errorf("X error = %q", st.LastError)
			}
		case "LONG":
			if !strings.Contains(st.LastError, "cannot be a file name") {
				t.Errorf("LONG error = %q", st.LastError)
			}
		}
	}
}
