// Package vault reads secrets from HashiCorp Vault: KV v1 and v2, leased
// secrets (database credentials and the like) and PKI certificates, and keeps
// the sidecar's Vault token alive.
package vault

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/singleflight"

	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// Options are the collaborators of a Source.
type Options struct {
	// Logger is used as given; the caller scopes it (component, source).
	Logger *slog.Logger
	// Metrics receives the token expiry (CredentialExpiry{source="vault"}).
	// Optional.
	Metrics *metrics.Metrics
	// AWSCredentials signs the sts:GetCallerIdentity request of auth method
	// aws.
	AWSCredentials aws.CredentialsProvider
	// Env looks up VAULT_TOKEN at every login of method token without a
	// token_file; os.Getenv in production.
	Env func(string) string
	// Now is the clock; time.Now when nil. Tests move it.
	Now func() time.Time
	// TokenCheck is how often, at most, the token is looked up while the
	// source holds leases and has nothing else to ask Vault: a token revoked
	// by an administrator (and every lease with it) is noticed within it.
	// Zero: never between renewals.
	TokenCheck time.Duration
}

// Source reads Vault paths. It logs in lazily on the first Fetch; Run keeps
// the token alive.
type Source struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Metrics
	env     func(string) string
	now     func() time.Time
	client  *api.Client
	http    *http.Client // the client's transport, wrapped by tests
	tr      *transport   // rate limit, Retry-After
	auth    *auth

	mu         sync.Mutex
	mounts     map[string]mount   // by mount path with trailing slash
	leased     map[string]*leased // by Ref.Object(): leases and PKI certificates
	lead       sources.Lead       // the longest parts of the leads of leased refs: the token's rollover leaves as much room
	wake       func(sources.Ref)  // set by Watch: asks the engine to fetch a ref now
	tokenCheck time.Duration

	mountFlight singleflight.Group // one mount lookup at a time per first path segment
	// onEvent is a test hook: "login", "renew", "relogin", "lease-capped".
	onEvent func(string)
	// objLocks serialise fetches of one leased or PKI object, so that two
	// callers never mint two sets of credentials.
	objLocks map[string]*sync.Mutex
}

var (
	_ sources.Source  = (*Source)(nil)
	_ sources.Runner  = (*Source)(nil)
	_ sources.Watcher = (*Source)(nil)
)

// New builds a Source. It makes no request.
func New(cfg Config, o Options) (*Source, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Env == nil {
		o.Env = func(string) string { return "" }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if cfg.Address == "" {
		return nil, errors.New("vault: no address: set sources.vault.address or VAULT_ADDR")
	}
	cfg.Auth.Mount = cfg.Auth.mount()

	hc := cleanhttp.DefaultPooledClient()
	// ConfigureTLS edits this config in place; it must exist.
	hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	// The API client follows Vault's redirects itself.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	ac := &api.Config{
		Address:    cfg.Address,
		HttpClient: hc,
		Timeout:    cfg.Timeout,
		// The engine backs off and retries; retries here would hide errors
		// and multiply requests.
		MaxRetries: 0,
	}
	if cfg.CACert != "" || cfg.ClientCert != "" || cfg.TLSServerName != "" {
		err := ac.ConfigureTLS(&api.TLSConfig{
			CACert:        cfg.CACert,
			ClientCert:    cfg.ClientCert,
			ClientKey:     cfg.ClientKey,
			TLSServerName: cfg.TLSServerName,
		})
		if err != nil {
			return nil, fmt.Errorf("vault: tls (check ca_cert, client_cert, client_key): %w", err)
		}
	}
	// Under the client: the rate limit and Retry-After (after ConfigureTLS,
	// which edits the *http.Transport).
	tr := &transport{next: hc.Transport, limiter: limiterFor(cfg.RateLimit, cfg.RateBurst)}
	hc.Transport = tr
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault: client for %q: %w", cfg.Address, err)
	}
	// NewClient picks up VAULT_TOKEN and VAULT_NAMESPACE from the process
	// environment; the sidecar decides both itself.
	client.ClearToken()
	client.ClearNamespace()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}

	s := &Source{
		cfg:     cfg,
		log:     o.Logger, // scoped by the caller (component, source)
		metrics: o.Metrics,
		env:     o.Env,
		now:     o.Now,
		client:  client,
		http:    hc,
		tr:      tr,
		mounts:  map[string]mount{},
		leased:  map[string]*leased{},

		tokenCheck: o.TokenCheck,

		objLocks: map[string]*sync.Mutex{},
	}
	s.auth, err = newAuth(s, cfg.Auth, o.AWSCredentials)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Fetch reads the object ref names: a KV secret, a leased secret (renewed
// while its lease allows) or a PKI certificate (issued anew before its
// NotAfter).
func (s *Source) Fetch(ctx context.Context, ref sources.Ref) (sources.Object, error) {
	if ref.Kind != sources.Vault {
		return sources.Object{}, fmt.Errorf("vault: ref %q is not a vault ref", ref.String())
	}
	m, err := s.mount(ctx, ref.Path)
	if err != nil {
		return sources.Object{}, err
	}
	sub := strings.TrimPrefix(ref.Path, m.path)
	switch {
	case m.kind == "pki" && strings.HasPrefix(sub, "issue/"):
		return s.issue(ctx, ref)
	case hasPKIParams(ref):
		return sources.Object{}, fmt.Errorf("vault: ref %q: common_name, alt_names, ip_sans, uri_sans and ttl apply only to PKI issue paths (MOUNT/issue/ROLE)", ref.String())
	case m.kv == 2:
		return s.readKV2(ctx, ref, m.path, sub)
	case ref.Query.Has("version"):
		return sources.Object{}, fmt.Errorf("vault: ref %q: ?version applies only to KV version 2 mounts (mount %q is not one)", ref.String(), m.path)
	default:
		return s.readLogical(ctx, ref)
	}
}

// mount is what the sidecar knows about one secrets engine.
type mount struct {
	path string // with trailing slash, e.g. "secret/"
	kind string // engine type: kv, pki, database, …; "" when unknown
	kv   int    // 1 or 2 for KV mounts, else 0
}

// mount finds the engine a path belongs to: one sys/internal/ui/mounts
// request per mount, then cached.
func (s *Source) mount(ctx context.Context, p string) (mount, error) {
	if m, ok := s.cachedMount(p); ok {
		return m, nil
	}
	// Concurrent first fetches under one first segment share one lookup:
	// a sidecar starting with 8 fetches in flight asked 8 times.
	first := strings.SplitN(p, "/", 2)[0]
	if _, err, _ := s.mountFlight.Do(first, func() (any, error) { return s.lookupMount(ctx, p) }); err != nil {
		return mount{}, err
	}
	if m, ok := s.cachedMount(p); ok {
		return m, nil
	}
	return s.lookupMount(ctx, p) // a nested mount the shared lookup did not find
}

// cachedMount is the longest known mount that p is under.
func (s *Source) cachedMount(p string) (mount, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := mount{}
	for mp, m := range s.mounts {
		if strings.HasPrefix(p, mp) && len(mp) > len(best.path) {
			best = m
		}
	}
	return best, best.path != ""
}

// lookupMount asks Vault which mount p is under and caches it.
func (s *Source) lookupMount(ctx context.Context, p string) (mount, error) {

	m := mount{path: strings.SplitN(p, "/", 2)[0] + "/"}
	sec, err := s.call(ctx, "look up the mount of", p, func(c *api.Client) (*api.Secret, error) {
		return c.Logical().ReadWithContext(ctx, "sys/internal/ui/mounts/"+p)
	})
	switch {
	case err == nil && sec != nil && sec.Data != nil:
		if mp, _ := sec.Data["path"].(string); mp != "" && strings.HasPrefix(p, mp) {
			m.path = mp
		}
		m.kind, _ = sec.Data["type"].(string)
		if m.kind == "kv" || m.kind == "generic" {
			m.kv = 1
			if opts, ok := sec.Data["options"].(map[string]any); ok && opts["version"] == "2" {
				m.kv = 2
			}
		}
	case err == nil, errors.Is(err, sources.ErrPermission), errors.Is(err, sources.ErrNotFound):
		// The token may not see the mount table entry (or the server is
		// old): treat the first segment as the mount and read it plainly.
		s.log.Debug("mount lookup failed; using the first path segment", "path", p, "err", err)
	default:
		return mount{}, err
	}
	if s.cfg.KVVersion != 0 && (m.kv != 0 || m.kind == "") {
		m.kv = s.cfg.KVVersion
	}
	s.mu.Lock()
	s.mounts[m.path] = m
	s.mu.Unlock()
	return m, nil
}

// readKV2 reads MOUNT/data/PATH. The data response carries the version in
// its metadata, so no separate metadata read is needed (see docs/vault.md).
func (s *Source) readKV2(ctx context.Context, ref sources.Ref, mountPath, sub string) (sources.Object, error) {
	p := mountPath + "data/" + sub
	var q map[string][]string
	if v := ref.Param("version"); v != "" {
		q = map[string][]string{"version": {v}}
	}
	sec, err := s.call(ctx, "read", ref.Path, func(c *api.Client) (*api.Secret, error) {
		return c.Logical().ReadWithDataWithContext(ctx, p, q)
	})
	if err != nil {
		return sources.Object{}, err
	}
	if sec == nil || sec.Data == nil {
		return sources.Object{}, fmt.Errorf("vault: read %q: %w", ref.Path, sources.ErrNotFound)
	}
	meta, _ := sec.Data["metadata"].(map[string]any)
	version := fmt.Sprint(meta["version"])
	data, _ := sec.Data["data"].(map[string]any)
	if data == nil {
		what := "no data"
		if dt, _ := meta["deletion_time"].(string); dt != "" {
			what = "version " + version + " is deleted"
		}
		if d, _ := meta["destroyed"].(bool); d {
			what = "version " + version + " is destroyed"
		}
		return sources.Object{}, fmt.Errorf("vault: read %q: %s: %w", ref.Path, what, sources.ErrNotFound)
	}
	obj, err := objectOf(ref, data)
	if err != nil {
		return sources.Object{}, err
	}
	obj.Version = version
	return obj, nil
}

// readLogical reads any other path: KV v1, or a leased engine such as
// database/creds/ROLE. A live renewable lease is renewed instead of read
// again, since every read of a leased path mints new credentials.
func (s *Source) readLogical(ctx context.Context, ref sources.Ref) (sources.Object, error) {
	key := ref.Object()
	defer s.lockObject(key)()
	s.mu.Lock()
	l := s.leased[key]
	s.mu.Unlock()
	if l != nil {
		if obj, ok := s.keepLease(ctx, ref, l); ok {
			return obj, nil
		}
	}

	sec, gen, err := s.callGen(ctx, "read", ref.Path, func(c *api.Client) (*api.Secret, error) {
		return c.Logical().ReadWithContext(ctx, ref.Path)
	})
	if err != nil {
		return sources.Object{}, err
	}
	if sec == nil || sec.Data == nil {
		return sources.Object{}, fmt.Errorf("vault: read %q: %w", ref.Path, sources.ErrNotFound)
	}
	obj, err := objectOf(ref, sec.Data)
	if err != nil {
		return sources.Object{}, err
	}
	obj.Version = hashVersion(sec.Data)
	if sec.LeaseID == "" {
		return obj, nil
	}
	now := s.now()
	dur := time.Duration(sec.LeaseDuration) * time.Second
	l = &leased{obj: obj, ref: ref, gen: gen, leaseID: sec.LeaseID, renewable: sec.Renewable, duration: dur}
	l.obj.Expiry = now.Add(dur)
	l.obj.RefreshAt = now.Add(ref.Lead.RefreshAfter(dur))
	s.warnLead(ref, dur)
	s.mu.Lock()
	s.leased[key] = l
	s.addLead(ref.Lead)
	s.mu.Unlock()
	s.log.Info("new lease", "path", ref.Path, "version", obj.Version, "duration_seconds", dur.Seconds(),
		"refresh_in_seconds", l.obj.RefreshAt.Sub(now).Seconds())
	return l.obj, nil
}

// warnLead warns when a value lives shorter than the room its replacement
// needs (the reload's time plus renew_margin): the app will see it expire.
func (s *Source) warnLead(ref sources.Ref, life time.Duration) {
	if lead := ref.Lead.Of(life); lead >= life {
		s.log.Warn("the value lives shorter than the lead its replacement needs (reload coalesce and timeout, plus renew_margin); it is fetched again at a tenth of its lifetime, but the app may see it expire: lengthen the TTL or shorten renew_margin",
			"path", ref.Path, "duration_seconds", life.Seconds(), "backoff", lead.String())
	}
}

// addLead widens s.lead to cover l. s.mu is held.
func (s *Source) addLead(l sources.Lead) {
	s.lead.Reload = max(s.lead.Reload, l.Reload)
	s.lead.Margin = max(s.lead.Margin, l.Margin)
	s.lead.Fraction = max(s.lead.Fraction, l.Fraction)
}

// tokenLead is how much room the token's rollover leaves before the old
// token (and its leases) expire.
func (s *Source) tokenLead() sources.Lead {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lead
}

// Watch implements sources.Watcher: it asks the engine to fetch a leased
// ref at once when the lease died or will die with the token that created
// it. It blocks until ctx ends.
func (s *Source) Watch(ctx context.Context, _ []sources.Ref, wake func(sources.Ref)) error {
	s.mu.Lock()
	s.wake = wake
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.wake = nil
	s.mu.Unlock()
	return nil
}

// orphaned asks for every lease issued under a token older than gen to be
// read again now: Vault revokes a token's leases with the token, at its
// expiry or at once when it was revoked.
func (s *Source) orphaned(gen int) {
	s.mu.Lock()
	wake := s.wake
	var refs []sources.Ref
	for _, l := range s.leased {
		if l.leaseID != "" && l.gen < gen {
			refs = append(refs, l.ref)
		}
	}
	s.mu.Unlock()
	for _, r := range refs {
		s.log.Info("lease belongs to the replaced token; reading it anew", "path", r.Path)
		if wake != nil {
			wake(r)
		}
	}
	if len(refs) > 0 {
		s.event("orphaned")
	}
}

func (s *Source) event(name string) {
	if s.onEvent != nil {
		s.onEvent(name)
	}
}

// lockObject locks the object key and returns its unlock.
func (s *Source) lockObject(key string) func() {
	s.mu.Lock()
	l := s.objLocks[key]
	if l == nil {
		l = &sync.Mutex{}
		s.objLocks[key] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// leased is an object whose lifetime Vault bounds: a lease, or a
// certificate.
type leased struct {
	obj       sources.Object
	ref       sources.Ref
	gen       int    // the token generation that created the lease
	leaseID   string // empty for certificates
	renewable bool
	capped    bool          // a renewal was cut short by the max TTL: replace, don't renew
	duration  time.Duration // the lease duration first granted
}

// due reports whether the object should be renewed or replaced now. A fetch
// before RefreshAt (a restart of the schedule, a second group) returns the
// held object without a request.
func (s *Source) due(l *leased) bool {
	return !s.now().Before(l.obj.RefreshAt.Add(-time.Second))
}

// keepLease renews l when that is possible and worthwhile; ok false means
// read the path anew.
func (s *Source) keepLease(ctx context.Context, ref sources.Ref, l *leased) (sources.Object, bool) {
	now := s.now()
	if !now.Before(l.obj.Expiry) {
		return sources.Object{}, false
	}
	if gen := s.auth.generation(); gen != 0 && l.gen != gen {
		// Issued under a token that was replaced: Vault revokes the
		// lease with that token, so read new credentials now.
		s.log.Info("lease issued under a replaced token; reading anew", "path", ref.Path)
		return sources.Object{}, false
	}
	if !s.due(l) {
		if s.auth.check(ctx, s.tokenCheck) {
			return l.obj, true
		}
		// The token is gone, and its leases with it.
		return sources.Object{}, false
	}
	if !l.renewable || l.capped {
		return sources.Object{}, false
	}
	inc := int(l.duration / time.Second)
	sec, err := s.call(ctx, "renew the lease of", ref.Path, func(c *api.Client) (*api.Secret, error) {
		return c.Sys().RenewWithContext(ctx, l.leaseID, inc)
	})
	if err != nil || sec == nil {
		// Revoked, expired or unknown: read anew.
		s.log.Info("lease renewal failed; reading anew", "path", ref.Path, "err", err)
		return sources.Object{}, false
	}
	dur := time.Duration(sec.LeaseDuration) * time.Second
	now = s.now()
	if dur < l.duration {
		// Cut short by the lease's max TTL: it ends at now+dur whatever
		// happens. Replace it, leaving room for the app's reload.
		l.capped = true
		s.event("lease-capped")
		if dur <= ref.Lead.Of(dur) {
			s.log.Info("lease at its max TTL, too close to its end to keep; reading anew", "path", ref.Path)
			return sources.Object{}, false
		}
		s.log.Info("lease at its max TTL; new credentials will be read before it ends", "path", ref.Path, "duration_seconds", dur.Seconds())
	}
	l.obj.Expiry = now.Add(dur)
	l.obj.RefreshAt = now.Add(ref.Lead.RefreshAfter(dur))
	obj := l.obj
	s.log.Debug("lease renewed", "path", ref.Path, "version", obj.Version, "duration_seconds", dur.Seconds())
	return obj, true
}

func hasPKIParams(ref sources.Ref) bool {
	for _, k := range sources.PKIParams {
		if ref.Query.Has(k) {
			return true
		}
	}
	return false
}

// issue issues a certificate from MOUNT/issue/ROLE, or returns the one it
// holds until that one's renewal point. The fields are certificate,
// private_key, ca_chain (joined PEM) and issuing_ca; the object has no Value,
// so a ref without #field expands into one target per field.
func (s *Source) issue(ctx context.Context, ref sources.Ref) (sources.Object, error) {
	key := ref.Object()
	defer s.lockObject(key)()
	s.mu.Lock()
	l := s.leased[key]
	s.mu.Unlock()
	if l != nil && !s.due(l) {
		return l.obj, nil
	}
	data := map[string]any{}
	for _, k := range sources.PKIParams {
		if v := ref.Param(k); v != "" {
			data[k] = v
		}
	}
	sec, err := s.call(ctx, "issue a certificate from", ref.Path, func(c *api.Client) (*api.Secret, error) {
		return c.Logical().WriteWithContext(ctx, ref.Path, data)
	})
	if err != nil {
		return sources.Object{}, err
	}
	if sec == nil || sec.Data == nil {
		return sources.Object{}, fmt.Errorf("vault: issue a certificate from %q: empty response", ref.Path)
	}
	str := func(k string) string { v, _ := sec.Data[k].(string); return v }
	certPEM := str("certificate")
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return sources.Object{}, fmt.Errorf("vault: issue a certificate from %q: no PEM certificate in the response", ref.Path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return sources.Object{}, fmt.Errorf("vault: issue a certificate from %q: %w", ref.Path, err)
	}
	var chain []string
	if list, ok := sec.Data["ca_chain"].([]any); ok {
		for _, c := range list {
			if c, ok := c.(string); ok {
				chain = append(chain, strings.TrimSpace(c))
			}
		}
	}
	if len(chain) == 0 && str("issuing_ca") != "" {
		chain = []string{strings.TrimSpace(str("issuing_ca"))}
	}
	obj := sources.Object{
		Fields: map[string]secret.Value{
			"certificate": secret.FromString(certPEM),
			"private_key": secret.FromString(str("private_key")),
			"ca_chain":    secret.FromString(strings.Join(chain, "\n") + "\n"),
			"issuing_ca":  secret.FromString(str("issuing_ca")),
		},
		Version: str("serial_number"),
		Expiry:  cert.NotAfter,
	}
	now := s.now()
	obj.RefreshAt = now.Add(ref.Lead.RefreshAfter(cert.NotAfter.Sub(now)))
	s.warnLead(ref, cert.NotAfter.Sub(now))
	s.mu.Lock()
	s.leased[key] = &leased{obj: obj, ref: ref}
	s.mu.Unlock()
	s.log.Info("certificate issued", "path", ref.Path, "version", obj.Version, "duration_seconds", cert.NotAfter.Sub(now).Seconds())
	return obj, nil
}

// objectOf maps Vault data to an object: each field (strings as they are,
// other JSON as its text) and, unless ?split=true, Value as the JSON of the
// whole data.
func objectOf(ref sources.Ref, data map[string]any) (sources.Object, error) {
	obj := sources.Object{Fields: make(map[string]secret.Value, len(data))}
	for k, v := range data {
		if str, ok := v.(string); ok {
			obj.Fields[k] = secret.FromString(str)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return sources.Object{}, fmt.Errorf("vault: read %q: field %q is not JSON-encodable", ref.Path, k)
		}
		obj.Fields[k] = secret.New(b)
	}
	if ref.Param("split") != "true" {
		b, err := json.Marshal(data)
		if err != nil {
			return sources.Object{}, fmt.Errorf("vault: read %q: data is not JSON-encodable", ref.Path)
		}
		obj.Value = secret.New(b)
	}
	return obj, nil
}

// hashVersion is the printable version of data without one: a hash prefix.
func hashVersion(data map[string]any) string {
	b, _ := json.Marshal(data) // map keys are sorted: stable
	return sources.ShortHash(sha256.Sum256(b))
}
