package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/pkg/backoff"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/awsregion"
)

// tokenFilePoll is how often Run re-reads token_file for a new token.
var tokenFilePoll = 30 * time.Second

// auth owns the sidecar's Vault token: one login shared by every fetch,
// renewal at a fraction of the TTL, and a new login when renewal fails, the
// token nears its max TTL or Vault rejects it.
type auth struct {
	s     *Source
	cfg   Auth
	creds aws.CredentialsProvider
	// login returns a login response; nil for method token.
	login   func(ctx context.Context, c *api.Client) (*api.Secret, error)
	changed chan struct{} // a new token: Run recomputes its schedule

	mu       sync.Mutex // held across a login, so concurrent fetches share one
	gen      int        // increments with every new token; 0: none yet
	tok      token
	failures int
	retryAt  time.Time // no login attempt before this after a failure
	lastErr  error
	// checkedAt is the last lookup made by check.
	checkedAt time.Time

	// approle with a response-wrapped secret_id: the wrapping token is
	// single-use, so the unwrapped secret_id is kept for later logins as
	// long as the file holds the same wrapping token.
	wrapped   secret.Value
	unwrapped secret.Value
}

// token is what the sidecar knows about its current token.
type token struct {
	value     secret.Value
	ttl       time.Duration // granted at login; the renewal increment
	renewable bool
	expiry    time.Time // zero: never expires
	refreshAt time.Time // when Run acts next; zero: never
	relogin   bool      // at refreshAt log in again instead of renewing
}

func newAuth(s *Source, cfg Auth, creds aws.CredentialsProvider) (*auth, error) {
	a := &auth{s: s, cfg: cfg, creds: creds, changed: make(chan struct{}, 1)}
	switch cfg.Method {
	case "", "token":
	case "approle":
		a.login = a.approle
	case "kubernetes", "jwt":
		a.login = a.jwt
	case "aws":
		if creds == nil {
			return nil, errors.New("vault: auth method aws needs AWS credentials (sources.aws)")
		}
		a.login = a.aws
	default:
		return nil, fmt.Errorf("vault: unknown auth method %q; want token, approle, kubernetes, jwt or aws", cfg.Method)
	}
	return a, nil
}

func (a *auth) event(name string) { a.s.event(name) }

// ensure returns the generation of a usable token, logging in first when
// there is none. After a failed login it answers with that error until the
// backoff has passed, so many fetches cause one login attempt.
func (a *auth) ensure(ctx context.Context) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.s.now()
	if a.gen > 0 && !a.tok.value.IsZero() && (a.tok.expiry.IsZero() || now.Before(a.tok.expiry)) {
		return a.gen, nil
	}
	if now.Before(a.retryAt) && a.lastErr != nil {
		return 0, a.lastErr
	}
	if err := a.loginLocked(ctx); err != nil {
		if ctx.Err() == nil {
			a.failures++
			a.retryAt = now.Add(backoffAfter(a.failures))
			a.lastErr = err
		}
		return 0, err
	}
	a.failures, a.retryAt, a.lastErr = 0, time.Time{}, nil
	return a.gen, nil
}

// rejected reports whether a 403 seen with token generation gen came from
// the token itself; if so the token is dropped so that ensure logs in again.
func (a *auth) rejected(ctx context.Context, gen int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen != gen {
		return true // already replaced: retry with the new one
	}
	_, err := a.s.client.Auth().Token().LookupSelfWithContext(ctx)
	if status(err) != 403 {
		return false // the token is fine: a policy denies the path
	}
	a.tok = token{}
	a.s.client.ClearToken()
	return true
}

// invalidate drops token generation gen so that the next ensure logs in.
func (a *auth) invalidate(gen int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen == gen {
		a.tok = token{}
		a.s.client.ClearToken()
	}
}

// loginLocked obtains a new token. a.mu is held.
func (a *auth) loginLocked(ctx context.Context) error {
	c, err := a.s.client.CloneWithHeaders()
	if err != nil {
		return fmt.Errorf("vault: log in: %w", err)
	}
	c.ClearToken()
	now := a.s.now()
	var tok token
	if a.login == nil {
		v, err := a.staticToken()
		if err != nil {
			return err
		}
		c.SetToken(string(v.Reveal()))
		sec, err := c.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return a.loginErr(err)
		}
		tok.value = v
		tok.ttl, _ = sec.TokenTTL()
		tok.renewable, _ = sec.TokenIsRenewable()
	} else {
		sec, err := a.login(ctx, c)
		if err != nil {
			return a.loginErr(err)
		}
		if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
			return fmt.Errorf("vault: log in with %s at auth/%s: no token in the response: %w", a.cfg.Method, a.cfg.Mount, sources.ErrAuth)
		}
		tok.value = secret.FromString(sec.Auth.ClientToken)
		tok.ttl = time.Duration(sec.Auth.LeaseDuration) * time.Second
		tok.renewable = sec.Auth.Renewable
	}
	a.schedule(&tok, now, tok.ttl, !tok.renewable)
	a.tok = tok
	a.gen++
	a.s.client.SetToken(string(tok.value.Reveal()))
	a.s.log.Info("logged in", "path", "auth/"+a.cfg.Mount, "duration_seconds", tok.ttl.Seconds())
	a.setMetric()
	select {
	case a.changed <- struct{}{}:
	default:
	}
	a.event("login")
	if a.gen > 1 {
		a.s.orphaned(a.gen)
	}
	return nil
}

// generation is the current token generation; 0 before the first login.
func (a *auth) generation() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen
}

// check looks the token up when the last look is older than every, so that
// a token revoked behind the sidecar's back (sys/leases/revoke-prefix on the
// auth mount) is noticed while every read is served from held leases. It
// reports false when the token was gone: the caller's lease went with it,
// and a new login has been made or will be.
func (a *auth) check(ctx context.Context, every time.Duration) bool {
	if every <= 0 {
		return true
	}
	a.mu.Lock()
	now := a.s.now()
	if a.gen == 0 || now.Sub(a.checkedAt) < every {
		a.mu.Unlock()
		return true
	}
	a.checkedAt = now
	gen := a.gen
	a.mu.Unlock()
	_, err := a.s.client.Auth().Token().LookupSelfWithContext(ctx)
	if status(err) != 403 {
		return true // alive, or Vault unreachable: keep what is held
	}
	a.s.log.Warn("token revoked; logging in again and reading its leases anew")
	a.invalidate(gen)
	a.event("revoked")
	if _, err := a.ensure(ctx); err != nil {
		a.s.log.Warn("vault login failed", "err", err)
	}
	return false
}

// schedule sets expiry and the next action of tok, which has ttl left.
func (a *auth) schedule(tok *token, now time.Time, ttl time.Duration, relogin bool) {
	tok.relogin = relogin
	tok.expiry, tok.refreshAt = time.Time{}, time.Time{}
	if ttl <= 0 {
		return // root-like token: never expires
	}
	tok.expiry = now.Add(ttl)
	if ttl >= 2*time.Second {
		lead := sources.Lead{}
		if relogin {
			// The token ends here, and every lease it created with it:
			// the new login, the leases read again under it, their write
			// and the app's reload must all fit before.
			lead = a.s.tokenLead()
		}
		tok.refreshAt = now.Add(lead.RefreshAfter(ttl))
	} else {
		tok.refreshAt = now.Add(ttl / 2)
		tok.relogin = true
	}
}

func (a *auth) setMetric() {
	if a.s.metrics == nil {
		return
	}
	g := a.s.metrics.CredentialExpiry.WithLabelValues(sources.Vault)
	if a.tok.expiry.IsZero() {
		g.Set(0)
		return
	}
	g.Set(float64(a.tok.expiry.Unix()))
}

// loginErr classifies a failed login: an unreachable or throttling Vault
// stays retryable; anything else is an authentication failure.
func (a *auth) loginErr(err error) error {
	if errors.Is(err, sources.ErrAuth) {
		return err
	}
	where := "auth/" + a.cfg.Mount + "/login"
	if a.login == nil {
		where = "auth/token/lookup-self"
	}
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode < 500 && re.StatusCode != 429 {
		return fmt.Errorf("vault: log in with %s (%s): status %d%s: %w", a.cfg.Method, where, re.StatusCode, vaultMessage(re), sources.ErrAuth)
	}
	return classify("log in with "+a.cfg.Method+" at", where, err)
}

// staticToken is the token of method token: token_file, or else VAULT_TOKEN.
func (a *auth) staticToken() (secret.Value, error) {
	if a.cfg.TokenFile != "" {
		return readCredential("token", "token_file", a.cfg.TokenFile)
	}
	if t := strings.TrimSpace(a.s.env("VAULT_TOKEN")); t != "" {
		return secret.FromString(t), nil
	}
	return secret.Value{}, fmt.Errorf("vault: auth method token: set auth.token_file or VAULT_TOKEN: %w", sources.ErrAuth)
}

// readCredential reads a file holding a credential, trimmed. Read on every
// login, so rotated files are picked up.
func readCredential(method, field, path string) (secret.Value, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return secret.Value{}, fmt.Errorf("vault: log in with %s: read %s %q: %v: %w", method, field, path, errors.Unwrap(err), sources.ErrAuth)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return secret.Value{}, fmt.Errorf("vault: log in with %s: %s %q is empty: %w", method, field, path, sources.ErrAuth)
	}
	return secret.New(b), nil
}

func (a *auth) approle(ctx context.Context, c *api.Client) (*api.Secret, error) {
	roleID, err := readCredential("approle", "role_id_file", a.cfg.RoleIDFile)
	if err != nil {
		return nil, err
	}
	secretID, err := readCredential("approle", "secret_id_file", a.cfg.SecretIDFile)
	if err != nil {
		return nil, err
	}
	if a.cfg.WrappedSecretID {
		if !a.wrapped.Equal(secretID) || a.unwrapped.IsZero() {
			sec, err := c.Logical().UnwrapWithContext(ctx, string(secretID.Reveal()))
			c.ClearToken()
			if err != nil {
				return nil, fmt.Errorf("vault: log in with approle: unwrap the secret_id in %q (a wrapping token is single-use): %w", a.cfg.SecretIDFile, a.loginErr(err))
			}
			id, _ := sec.Data["secret_id"].(string)
			if id == "" {
				return nil, fmt.Errorf("vault: log in with approle: the wrapped response in %q holds no secret_id: %w", a.cfg.SecretIDFile, sources.ErrAuth)
			}
			a.wrapped, a.unwrapped = secretID, secret.FromString(id)
		}
		secretID = a.unwrapped
	}
	return c.Logical().WriteWithContext(ctx, "auth/"+a.cfg.Mount+"/login", map[string]any{
		"role_id":   string(roleID.Reveal()),
		"secret_id": string(secretID.Reveal()),
	})
}

// jwt logs in with methods kubernetes and jwt: a role and a JWT read from
// its file at every login (projected service-account tokens rotate).
func (a *auth) jwt(ctx context.Context, c *api.Client) (*api.Secret, error) {
	jwt, err := readCredential(a.cfg.Method, "jwt_file", a.cfg.JWTFile)
	if err != nil {
		return nil, err
	}
	return c.Logical().WriteWithContext(ctx, "auth/"+a.cfg.Mount+"/login", map[string]any{
		"role": a.cfg.Role,
		"jwt":  string(jwt.Reveal()),
	})
}

// The aws login's default STS target, as Vault's own CLI signs it and
// Vault's aws auth replays it by default.
const (
	stsGlobalURL    = "https://sts.amazonaws.com/"
	stsGlobalRegion = "us-east-1"
	stsBody         = "Action=GetCallerIdentity&Version=2011-06-15"
)

// stsTarget is the URL the aws login's request is addressed to (Vault
// replays it to its configured sts_endpoint, keeping this URL's host) and
// the region it is signed for.
func (a Auth) stsTarget() (endpoint, region string) {
	endpoint, region = a.STSEndpoint, a.STSRegion
	switch {
	case endpoint != "":
		// The signed path is the one Vault's replay sends: "/" for none.
		if u, err := url.Parse(endpoint); err == nil && u.Path == "" {
			u.Path = "/"
			endpoint = u.String()
		}
	case region != "":
		endpoint = "https://sts." + region + "." + awsregion.PartitionOf(region).DNSSuffix + "/"
	default:
		endpoint = stsGlobalURL
	}
	if region == "" {
		region = stsGlobalRegion
	}
	return endpoint, region
}

// aws logs in with the IAM method: a signed sts:GetCallerIdentity request
// that Vault replays to STS to learn who the caller is.
func (a *auth) aws(ctx context.Context, c *api.Client) (*api.Secret, error) {
	creds, err := a.creds.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault: log in with aws: AWS credentials: %v: %w", err, sources.ErrAuth)
	}
	stsURL, stsRegion := a.cfg.stsTarget()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, stsURL, strings.NewReader(stsBody))
	if err != nil {
		return nil, fmt.Errorf("vault: log in with aws: STS endpoint %q: %w", stsURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if a.cfg.ServerIDHeader != "" {
		req.Header.Set("X-Vault-AWS-IAM-Server-ID", a.cfg.ServerIDHeader)
	}
	sum := sha256.Sum256([]byte(stsBody))
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sts", stsRegion, a.s.now()); err != nil {
		return nil, fmt.Errorf("vault: log in with aws: sign the STS request: %v: %w", err, sources.ErrAuth)
	}
	headers, err := json.Marshal(req.Header)
	if err != nil {
		return nil, err
	}
	b64 := base64.StdEncoding.EncodeToString
	return c.Logical().WriteWithContext(ctx, "auth/"+a.cfg.Mount+"/login", map[string]any{
		"role":                    a.cfg.Role,
		"iam_http_request_method": http.MethodPost,
		"iam_request_url":         b64([]byte(stsURL)),
		"iam_request_body":        b64([]byte(stsBody)),
		"iam_request_headers":     b64(headers),
	})
}

// Run keeps the token alive until ctx ends: it logs in at once, renews at
// two thirds of the TTL (with jitter), logs in again when renewal fails or
// the token nears its max TTL, backs off after failed logins, and re-reads
// token_file when it changes. It returns nil on cancellation.
func (s *Source) Run(ctx context.Context) error {
	a := s.auth
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := a.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-a.changed:
			timer.Stop() // Go ≥1.23 timers: no stale value after Stop
		case <-timer.C:
		}
	}
}

// step does what is due and says how long to wait before the next step.
func (a *auth) step(ctx context.Context) time.Duration {
	gen, err := a.ensure(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.s.log.Warn("vault login failed", "err", err, "attempt", a.failuresNow())
		}
		return a.untilRetry()
	}
	a.mu.Lock()
	tok := a.tok
	a.mu.Unlock()
	now := a.s.now()

	if a.login == nil && a.cfg.TokenFile != "" {
		if v, err := readCredential("token", "token_file", a.cfg.TokenFile); err == nil && !v.Equal(tok.value) {
			a.s.log.Info("token_file changed; using the new token", "path", a.cfg.TokenFile)
			a.invalidate(gen)
			return 0
		}
	}
	if tok.refreshAt.IsZero() || now.Before(tok.refreshAt) {
		return a.wait(tok, now)
	}
	if tok.relogin || !tok.renewable {
		if a.login == nil && !tok.expiry.IsZero() && now.Before(tok.expiry) {
			// A static token cannot be replaced by the sidecar: keep it
			// until it expires, watching token_file for a new one.
			a.mu.Lock()
			if a.gen == gen {
				a.schedule(&a.tok, now, tok.expiry.Sub(now), true)
			}
			a.mu.Unlock()
			return a.wait(a.snapshot(), now)
		}
		a.s.log.Info("token near its max TTL; logging in again")
		a.invalidate(gen)
		a.event("relogin")
		return 0
	}
	a.renew(ctx, gen, tok)
	return a.wait(a.snapshot(), a.s.now())
}

func (a *auth) snapshot() token {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tok
}

func (a *auth) failuresNow() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failures
}

func (a *auth) untilRetry() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return max(a.retryAt.Sub(a.s.now()), 10*time.Millisecond)
}

// wait is the time until tok's next action, capped by the token_file poll.
func (a *auth) wait(tok token, now time.Time) time.Duration {
	d := time.Duration(1<<63 - 1)
	if !tok.refreshAt.IsZero() {
		d = tok.refreshAt.Sub(now)
	}
	if a.login == nil && a.cfg.TokenFile != "" {
		d = min(d, tokenFilePoll)
	}
	return max(d, 0)
}

// renew extends the token by its login TTL. A shorter grant means the max
// TTL is near: the next action is then a new login. A failed renewal of a
// token Vault rejects logs in again; other failures retry with backoff
// until the token expires.
func (a *auth) renew(ctx context.Context, gen int, tok token) {
	sec, err := a.s.client.Auth().Token().RenewSelfWithContext(ctx, int(tok.ttl/time.Second))
	now := a.s.now()
	if err == nil && (sec == nil || sec.Auth == nil) {
		err = errors.New("empty renewal response")
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if c := status(err); c == 403 || c == 400 || (c == 0 && !tok.expiry.IsZero() && !now.Before(tok.expiry)) {
			a.s.log.Info("token renewal refused; logging in again", "err", classify("renew", "auth/token/renew-self", err))
			a.invalidate(gen)
			a.event("relogin")
			return
		}
		a.mu.Lock()
		if a.gen == gen {
			a.failures++
			a.tok.refreshAt = now.Add(backoffAfter(a.failures))
			if !a.tok.expiry.IsZero() && a.tok.refreshAt.After(a.tok.expiry) {
				a.tok.refreshAt = a.tok.expiry
			}
		}
		a.mu.Unlock()
		a.s.log.Warn("token renewal failed", "err", classify("renew", "auth/token/renew-self", err))
		return
	}
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	a.mu.Lock()
	if a.gen == gen {
		a.failures = 0
		// A grant well short of the increment means the max TTL caps it.
		a.schedule(&a.tok, now, ttl, ttl < tok.ttl*3/4)
		a.setMetric()
	}
	a.mu.Unlock()
	a.s.log.Debug("token renewed", "duration_seconds", ttl.Seconds())
	a.event("renew")
}

// loginBackoff is the wait after n consecutive failed logins or renewals:
// exponential from 500ms to one minute, with equal jitter, because one
// gate holds every fetch back until it has passed.
var loginBackoff = backoff.Policy{Base: 500 * time.Millisecond, Max: time.Minute, Jitter: backoff.Equal}

func backoffAfter(n int) time.Duration { return loginBackoff.Delay(n) }
