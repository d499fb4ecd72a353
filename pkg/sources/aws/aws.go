// Package aws reads secrets from AWS Secrets Manager and SSM Parameter Store
// with credentials from the EC2 instance role over IMDSv2 (or a default
// chain of environment, web identity, shared profile, container and IMDS),
// optionally through STS AssumeRole.
package aws

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"golang.org/x/time/rate"

	"github.com/phase-sidecar/phase-sidecar/pkg/backoff"
	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// Credential modes of config.AWS.Credentials.
const (
	CredentialsIMDS    = "imds"
	CredentialsDefault = "default"
)

// Options are the collaborators of a Source.
type Options struct {
	Logger  *slog.Logger     // scoped by the caller (component, source); nil discards
	Metrics *metrics.Metrics // optional: CredentialExpiry and SourceUp for aws-sm and aws-ssm
	// Env reads the environment (os.Getenv in production): AWS_REGION,
	// AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SECRETS_MANAGER,
	// AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL_STS,
	// AWS_EC2_METADATA_SERVICE_ENDPOINT(_MODE), AWS_EC2_METADATA_DISABLED,
	// AWS_CA_BUNDLE, and the refused AWS_USE_FIPS_ENDPOINT,
	// AWS_USE_DUALSTACK_ENDPOINT, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS; in
	// "default" mode also the chain's variables (AWS_ACCESS_KEY_ID,
	// AWS_WEB_IDENTITY_TOKEN_FILE, AWS_PROFILE, AWS_DEFAULT_PROFILE,
	// AWS_CONFIG_FILE, AWS_CONTAINER_CREDENTIALS_*, HOME, …).
	Env func(string) string
	// HTTPClient sends every Secrets Manager, SSM and STS request; nil means
	// the SDK's default transport. IMDS and container credentials always use
	// their own clients.
	HTTPClient aws.HTTPClient
}

// Source is the AWS source. Its SecretsManager and SSM views implement
// sources.Source and sources.Batcher; both share credentials, the throttling
// back-off and the rate limit.
type Source struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	env     func(string) string
	cfg     config.AWS
	http    aws.HTTPClient

	imds *imds.Client // nil when AWS_EC2_METADATA_DISABLED in "default" mode
	diag *imdsDiag    // nil when imds is
	// base supplies credentials before AssumeRole; nil until the region is
	// known when it is web identity (an STS call).
	base aws.CredentialsProvider
	// chain is what "default" mode resolved; nil in "imds" mode.
	chain *chain
	// region is fixed once known; clients are built then (lazily when the
	// region must come from IMDS placement).
	mu     sync.Mutex
	region string
	creds  aws.CredentialsProvider // the cache over base (and AssumeRole)
	sm     smAPI
	ssm    ssmAPI

	gate    *gate
	limiter *rate.Limiter // nil: unlimited

	smView  *secretsManager
	ssmView *parameterStore
}

// New builds the source. It does no network I/O, except that a region that
// must come from IMDS placement is looked up lazily on first use.
func New(ctx context.Context, cfg config.AWS, o Options) (*Source, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Env == nil {
		o.Env = func(string) string { return "" }
	}
	s := &Source{
		log:     o.Logger,
		metrics: o.Metrics,
		env:     o.Env,
		cfg:     cfg,
		http:    o.HTTPClient,
		gate:    &gate{},
	}
	if cfg.RateLimit > 0 {
		burst := max(1, int(cfg.RateLimit))
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), burst)
	}
	if ar := cfg.AssumeRole; ar != nil && ar.RoleARN == "" {
		return nil, errors.New("aws: assume_role: role_arn is required")
	}

	if bundle := s.env("AWS_CA_BUNDLE"); bundle != "" && s.http == nil {
		c, err := caBundleClient(bundle)
		if err != nil {
			return nil, err
		}
		s.http = c
	}
	imdsEndpoint, err := imdsEndpoint(s.env)
	if err != nil {
		return nil, err
	}
	imdsDisabled := strings.EqualFold(s.env("AWS_EC2_METADATA_DISABLED"), "true")
	newIMDSCredentials := func() *imdsCredentials {
		return &imdsCredentials{
			provider: ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = s.imds }),
			diag:     s.diag,
		}
	}
	switch cfg.Credentials {
	case "", CredentialsIMDS:
		if imdsDisabled {
			return nil, errors.New("aws: credentials: imds, but AWS_EC2_METADATA_DISABLED=true; unset it or use credentials: default")
		}
		s.diag = &imdsDiag{endpoint: imdsEndpoint}
		s.imds = newIMDS(imdsEndpoint, s.diag)
		// Only the instance role: no environment, shared files or web
		// identity, and never IMDSv1 (EnableFallback is false on the client).
		s.base = newIMDSCredentials()
	case CredentialsDefault:
		// Not the SDK's config.LoadDefaultConfig: it links the SSO, SSO-OIDC
		// and sign-in clients into every build, megabytes of resident memory.
		c, err := resolveChain(ctx, s.env, imdsDisabled)
		if err != nil {
			return nil, err
		}
		s.chain = c
		if !imdsDisabled {
			s.diag = &imdsDiag{endpoint: imdsEndpoint}
			s.imds = newIMDS(imdsEndpoint, s.diag)
		}
		switch {
		case c.static != nil:
			s.base = c.static
		case c.source == fromIMDS:
			s.base = newIMDSCredentials()
		}
	default:
		return nil, fmt.Errorf("aws: credentials %q: want %q or %q", cfg.Credentials, CredentialsIMDS, CredentialsDefault)
	}

	usesSTS := cfg.AssumeRole != nil || s.chain != nil && s.chain.webIdentity != nil
	var prof *profile
	if s.chain != nil {
		prof = s.chain.prof
	}
	if err := s.checkEndpointSettings(prof, usesSTS); err != nil {
		return nil, err
	}

	s.smView = &secretsManager{s: s}
	s.ssmView = &parameterStore{s: s}
	if r, origin := s.regionFromConfig(); r != "" {
		if err := s.build(r, origin); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// SecretsManager is the source for aws-sm:// refs.
func (s *Source) SecretsManager() sources.Source { return s.smView }

// SSM is the source for aws-ssm:// refs.
func (s *Source) SSM() sources.Source { return s.ssmView }

// Credentials returns the cached (and assumed-role) credentials, for Vault's
// aws auth method. It resolves the region first when that must come from IMDS.
func (s *Source) Credentials() aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		return s.credentials(ctx, "")
	})
}

// Check diagnoses the credentials at start-up: it resolves the region and
// retrieves credentials (IMDS, then AssumeRole when configured), returning
// an error worded for the operator (hop limit, no role attached, …).
func (s *Source) Check(ctx context.Context) error {
	c, err := s.credentials(ctx, "")
	if err != nil {
		return err
	}
	msg := "aws credentials ready from " + c.Source
	if s.chain != nil {
		msg += " (default chain: " + s.chain.source + ")"
	}
	if ar := s.cfg.AssumeRole; ar != nil {
		msg += " as " + ar.RoleARN
	}
	if c.CanExpire {
		msg += ", expiring " + c.Expires.UTC().Format(time.RFC3339)
	}
	s.log.Info(msg)
	return nil
}

// Region is the resolved region, or "" before it is known.
func (s *Source) Region() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.region
}

// regionFromConfig is the configured region and where it comes from:
// sources.aws.region, AWS_REGION, AWS_DEFAULT_REGION, then (in "default"
// mode) the shared profile's region; "" when IMDS placement must say.
func (s *Source) regionFromConfig() (string, string) {
	switch {
	case s.cfg.Region != "":
		return s.cfg.Region, "sources.aws.region"
	case s.env("AWS_REGION") != "":
		return s.env("AWS_REGION"), "AWS_REGION"
	case s.env("AWS_DEFAULT_REGION") != "":
		return s.env("AWS_DEFAULT_REGION"), "AWS_DEFAULT_REGION"
	case s.chain != nil && s.chain.region != "":
		p := s.chain.prof
		return s.chain.region, fmt.Sprintf("the region of shared profile %q (%s)", p.name, p.where(keyRegion))
	}
	return "", ""
}

// ready makes sure the region is known and the clients are built.
func (s *Source) ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.region != "" {
		return nil
	}
	if s.imds == nil {
		return errors.New("aws: no region: set sources.aws.region or AWS_REGION (IMDS is disabled)")
	}
	s.diag.reset()
	out, err := s.imds.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		return fmt.Errorf("aws: no region configured and IMDS placement failed (set sources.aws.region or AWS_REGION): %w", s.diag.explain(err))
	}
	if err := s.buildLocked(out.Region, "IMDS placement"); err != nil {
		return err
	}
	s.log.Info("aws region " + out.Region + " from IMDS placement")
	return nil
}

func (s *Source) build(region, origin string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buildLocked(region, origin)
}

// buildLocked validates the region (it becomes part of every endpoint's
// host name) and builds the clients for it.
func (s *Source) buildLocked(region, origin string) error {
	if err := s.checkRegion(region, origin); err != nil {
		return err
	}
	hc := s.http
	if hc == nil {
		hc = awshttp.NewBuildableClient()
	}
	base := aws.Config{Retryer: func() aws.Retryer { return newRetryer() }, Region: region, HTTPClient: hc}
	stsEndpoint := func(o *sts.Options) {
		if ep := s.endpoint("AWS_ENDPOINT_URL_STS"); ep != "" {
			o.BaseEndpoint = aws.String(ep)
		}
	}
	if s.base == nil && s.chain != nil && s.chain.webIdentity != nil {
		// AssumeRoleWithWebIdentity is unsigned: no credentials on the client.
		s.base = s.chain.webIdentity.provider(sts.NewFromConfig(base, stsEndpoint))
	}
	creds := s.base
	if ar := s.cfg.AssumeRole; ar != nil {
		stsCfg := base
		stsCfg.Credentials = s.base
		client := sts.NewFromConfig(stsCfg, stsEndpoint)
		creds = stscreds.NewAssumeRoleProvider(client, ar.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = ar.SessionName
			if o.RoleSessionName == "" {
				o.RoleSessionName = "phase-sidecar"
			}
			o.Duration = ar.Duration
			if o.Duration == 0 {
				o.Duration = time.Hour
			}
			if ar.ExternalID != "" {
				o.ExternalID = aws.String(ar.ExternalID)
			}
			if ar.SourceIdentity != "" {
				o.SourceIdentity = aws.String(ar.SourceIdentity)
			}
		})
	}
	if c, ok := creds.(*aws.CredentialsCache); ok {
		s.creds = c
	} else {
		// Refresh 5–10 minutes before expiry, spread so that many sidecars
		// do not hit STS at once.
		s.creds = aws.NewCredentialsCache(creds, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = 10 * time.Minute
			o.ExpiryWindowJitterFrac = 0.5
		})
	}
	smURL := s.endpoint("AWS_ENDPOINT_URL_SECRETS_MANAGER")
	if smURL == "" {
		smURL = serviceEndpoint("secretsmanager", region)
	}
	ssmURL := s.endpoint("AWS_ENDPOINT_URL_SSM")
	if ssmURL == "" {
		ssmURL = serviceEndpoint("ssm", region)
	}
	s.sm = smClient{newJSONClient(hc, smURL, "secretsmanager", "secretsmanager", "Secrets Manager", region, s.creds)}
	s.ssm = ssmClient{newJSONClient(hc, ssmURL, "ssm", "AmazonSSM", "SSM", region, s.creds)}
	s.region = region
	return nil
}

// endpoint is the service-specific endpoint variable, else AWS_ENDPOINT_URL,
// else "" (the public endpoint).
func (s *Source) endpoint(serviceVar string) string {
	for _, k := range []string{serviceVar, "AWS_ENDPOINT_URL"} {
		if v := s.env(k); v != "" {
			return v
		}
	}
	return ""
}

// credentials retrieves (cached) credentials, records their expiry and
// returns an operator-worded error. label is the source metric label to
// mark down on failure ("" for both).
func (s *Source) credentials(ctx context.Context, label string) (aws.Credentials, error) {
	if err := s.ready(ctx); err != nil {
		s.setUp(label, false)
		return aws.Credentials{}, err
	}
	c, err := s.creds.Retrieve(ctx)
	if err != nil {
		s.setUp(label, false)
		return aws.Credentials{}, s.credentialError(err)
	}
	if s.metrics != nil && c.CanExpire {
		for _, l := range labels(label) {
			s.metrics.CredentialExpiry.WithLabelValues(l).Set(float64(c.Expires.Unix()))
		}
	}
	return c, nil
}

// credentialError words a failed credential retrieval.
func (s *Source) credentialError(err error) error {
	var ie *IMDSError
	if errors.As(err, &ie) {
		// Drop the SDK's "failed to refresh cached credentials" prefix.
		if ar := s.cfg.AssumeRole; ar != nil {
			return fmt.Errorf("aws: base credentials for assuming %s: %w", ar.RoleARN, ie)
		}
		return ie
	}
	if ar := s.cfg.AssumeRole; ar != nil {
		return s.classify(fmt.Sprintf("aws: credentials: assume role %s", ar.RoleARN), "sts:AssumeRole", err, sources.ErrAuth)
	}
	return s.classify("aws: credentials", "", err, sources.ErrAuth)
}

func labels(label string) []string {
	if label == "" {
		return []string{sources.AWSSM, sources.AWSSSM}
	}
	return []string{label}
}

func (s *Source) setUp(label string, up bool) {
	if s.metrics == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	for _, l := range labels(label) {
		s.metrics.SourceUp.WithLabelValues(l).Set(v)
	}
}

// observe updates the source state after an API call: success resets the
// throttling back-off, a throttle extends it for the whole AWS source.
func (s *Source) observe(label string, err error) {
	switch {
	case err == nil:
		s.gate.reset()
		s.setUp(label, true)
	case errors.Is(err, sources.ErrThrottled):
		d := s.gate.throttled(time.Now())
		s.log.Warn(label+" throttled; backing off the whole AWS source", "backoff", d.String())
	case errors.Is(err, sources.ErrAuth), errors.Is(err, sources.ErrUnavailable):
		s.setUp(label, false)
	default:
		// Not found, permission: the source itself answers.
		s.setUp(label, true)
	}
}

// wait blocks for the throttling back-off and the rate limit.
func (s *Source) wait(ctx context.Context) error {
	if until := s.gate.until(); !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("aws: backing off after throttling until %s: %w", until.UTC().Format(time.RFC3339), errors.Join(sources.ErrThrottled, ctx.Err()))
		case <-t.C:
		}
	}
	if s.limiter != nil {
		if err := s.limiter.Wait(ctx); err != nil {
			return fmt.Errorf("aws: rate limit %g/s: %w", s.cfg.RateLimit, errors.Join(sources.ErrThrottled, err))
		}
	}
	return nil
}

// gate is the source-wide back-off after ThrottlingException, reset by the
// next success. Equal jitter: the gate holds every read back, so each
// strike must buy a real pause, not one drawn near zero.
type gate struct {
	mu     sync.Mutex
	strike int
	open   time.Time
}

var throttle = backoff.Policy{Base: time.Second, Max: time.Minute, Jitter: backoff.Equal}

func (g *gate) throttled(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.strike++
	d := throttle.Delay(g.strike)
	if t := now.Add(d); t.After(g.open) {
		g.open = t
	}
	return d
}

func (g *gate) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.strike = 0
	g.open = time.Time{}
}

func (g *gate) until() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Now().After(g.open) {
		return time.Time{}
	}
	return g.open
}

// caBundleClient trusts the PEM certificates in file (AWS_CA_BUNDLE) for
// the Secrets Manager, SSM and STS endpoints, as the SDK chain does.
func caBundleClient(file string) (aws.HTTPClient, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("aws: AWS_CA_BUNDLE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("aws: AWS_CA_BUNDLE %s: no PEM certificates", file)
	}
	return awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	}), nil
}
