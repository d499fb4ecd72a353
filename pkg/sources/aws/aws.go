// Package aws reads secrets from AWS Secrets Manager and SSM Parameter Store.
// Credentials come from the EC2 instance role over IMDSv2 only ("imds") or
// from the AWS SDK's default chain ("default": config.LoadDefaultConfig),
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
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"golang.org/x/time/rate"

	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws/internal/awsjson"
)

// Credential modes of Config.Credentials.
const (
	CredentialsIMDS    = "imds"
	CredentialsDefault = "default"
)

// Config is what the AWS source needs, validated and defaulted by the
// caller; the source checks nothing again.
type Config struct {
	// Region wins over the environment's (or, in "default" mode, the
	// SDK's); "" leaves it to them, then to IMDS placement.
	Region string
	// Credentials is CredentialsIMDS (also "") or CredentialsDefault.
	Credentials string
	AssumeRole  *AssumeRole // nil: the base credentials as they are
	RateLimit   float64     // requests per second across the source; 0: unlimited
}

// AssumeRole is STS AssumeRole on top of the base credentials. Zero
// values are the SDK's (a generated session name, 15 minutes).
type AssumeRole struct {
	RoleARN        string // required
	ExternalID     string
	SessionName    string
	Duration       time.Duration
	SourceIdentity string
}

// Options are the collaborators of a Source.
type Options struct {
	Logger  *slog.Logger     // scoped by the caller (component, source); nil discards
	Metrics *metrics.Metrics // optional: CredentialExpiry for aws-sm and aws-ssm
	// Env reads the environment in "imds" mode (os.Getenv in production):
	// AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL,
	// AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL_SSM,
	// AWS_ENDPOINT_URL_STS, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS,
	// AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT,
	// AWS_EC2_METADATA_SERVICE_ENDPOINT(_MODE), AWS_EC2_METADATA_DISABLED and
	// AWS_CA_BUNDLE. In "default" mode the SDK reads the process environment
	// and the shared files itself, by its own rules.
	Env func(string) string
	// HTTPClient sends every Secrets Manager, SSM and STS request (and, in
	// "default" mode, those of the SDK's credential providers); nil means
	// the SDK's default transport with a RequestTimeout. IMDS always uses
	// its own client.
	HTTPClient aws.HTTPClient
}

// RequestTimeout bounds each request to Secrets Manager, SSM and STS (and
// the SDK's credential providers) on the default transport. Fetches carry
// no deadline of their own, and the SDK's credential cache detaches a
// refresh from its caller's context: without a bound, an endpoint that
// accepts and never answers would hold a fetch, or every credential
// refresh after it, for good.
const RequestTimeout = 30 * time.Second

func defaultHTTPClient() *awshttp.BuildableClient {
	return awshttp.NewBuildableClient().WithTimeout(RequestTimeout)
}

// Source is the AWS source. Its SecretsManager and SSM views implement
// sources.Source and sources.Batcher; both share credentials and the rate
// limit.
type Source struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	cfg     Config
	opts    Options
	set     settings
	imds    *imdsClient // nil when IMDS is disabled in "default" mode

	// region is fixed once known; the clients are built then (lazily when
	// the region must come from IMDS placement).
	mu     sync.Mutex
	region string
	creds  aws.CredentialsProvider // the cache over the base (and AssumeRole)
	sm     smAPI
	ssm    ssmAPI
	// from is where the last credentials came from, for messages.
	from string

	limiter *rate.Limiter // nil: unlimited

	smView  *secretsManager
	ssmView *parameterStore
}

// New builds the source. It does no network I/O, except that a region that
// must come from IMDS placement is looked up lazily on first use.
func New(ctx context.Context, cfg Config, o Options) (*Source, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Env == nil {
		o.Env = func(string) string { return "" }
	}
	s := &Source{log: o.Logger, metrics: o.Metrics, cfg: cfg, opts: o}
	if cfg.RateLimit > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), max(1, int(cfg.RateLimit)))
	}
	var err error
	if cfg.Credentials == CredentialsDefault {
		err = s.setupDefault(ctx, cfg.Region)
	} else {
		err = s.setupIMDS()
	}
	if err != nil {
		return nil, err
	}
	s.smView = &secretsManager{s: s}
	s.ssmView = &parameterStore{s: s}
	if s.set.region != "" {
		if err := s.build(ctx, s.set.region, s.set.regionOrigin); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// setupIMDS is "imds" mode: the instance role only, never the environment's
// keys, shared files or web identity, and never IMDSv1.
func (s *Source) setupIMDS() error {
	env := s.opts.Env
	if strings.EqualFold(env("AWS_EC2_METADATA_DISABLED"), "true") {
		return errors.New("aws: credentials: imds, but AWS_EC2_METADATA_DISABLED=true; unset it or use credentials: default")
	}
	set, err := envSettings(env, s.cfg.Region)
	if err != nil {
		return err
	}
	set.http = s.opts.HTTPClient
	switch bundle := env("AWS_CA_BUNDLE"); {
	case set.http != nil:
	case bundle != "":
		if set.http, err = caBundleClient(bundle); err != nil {
			return err
		}
	default:
		set.http = defaultHTTPClient()
	}
	endpoint, err := imdsEndpoint(env)
	if err != nil {
		return err
	}
	s.imds = newIMDS(imds.Options{Endpoint: endpoint})
	set.base = s.imds.credentials()
	s.set = set
	return nil
}

// setupDefault is "default" mode: the SDK's config.LoadDefaultConfig with
// its credential chain (environment, web identity, SSO, credential_process,
// profile role chains, container credentials, IMDS), its region and its
// endpoint settings. Two things are ours: the IMDS step uses this package's
// IMDSv2-only client, and no SDK client retries (see docs/aws.md). region,
// when set, overrides the SDK's.
func (s *Source) setupDefault(ctx context.Context, region string) error {
	if s.imds == nil {
		s.imds = &imdsClient{diag: &imdsDiag{}}
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		awsconfig.WithEC2RoleCredentialOptions(func(o *ec2rolecreds.Options) { o.Client = s.imds }),
		awsconfig.WithCredentialsCacheOptions(cacheOptions),
	}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	if s.opts.HTTPClient != nil {
		opts = append(opts, awsconfig.WithHTTPClient(s.opts.HTTPClient))
	} else {
		// The SDK adds AWS_CA_BUNDLE's roots to it.
		opts = append(opts, awsconfig.WithHTTPClient(defaultHTTPClient()))
	}
	sdk, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("aws: credentials: default: %w", err)
	}
	set, err := sdkSettings(ctx, sdk, region)
	if err != nil {
		return err
	}
	if s.imds.c == nil {
		s.imds.c = imds.NewFromConfig(sdk, s.imds.options)
	}
	s.set = set
	return nil
}

// cacheOptions refresh credentials 5–10 minutes before they expire, spread
// so that many sidecars do not ask STS at once.
func cacheOptions(o *aws.CredentialsCacheOptions) {
	o.ExpiryWindow = 10 * time.Minute
	o.ExpiryWindowJitterFrac = 0.5
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
// retrieves credentials (then AssumeRole when configured), returning an
// error worded for the operator (hop limit, no role attached, …).
func (s *Source) Check(ctx context.Context) error {
	c, err := s.credentials(ctx, "")
	if err != nil {
		return err
	}
	msg := "aws credentials ready from " + c.Source
	if s.cfg.Credentials == CredentialsDefault {
		msg += " (the SDK's default chain)"
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

// ready makes sure the region is known and the clients are built.
func (s *Source) ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.region != "" {
		return nil
	}
	if s.imds == nil || s.imds.c == nil {
		return errors.New("aws: no region: set sources.aws.region or AWS_REGION (IMDS is disabled)")
	}
	out, err := s.imds.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		return fmt.Errorf("aws: no region configured and IMDS placement failed (set sources.aws.region or AWS_REGION): %w", err)
	}
	if err := s.buildLocked(ctx, out.Region, "IMDS placement"); err != nil {
		return err
	}
	s.log.Info("aws region " + out.Region + " from IMDS placement")
	return nil
}

func (s *Source) build(ctx context.Context, region, origin string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buildLocked(ctx, region, origin)
}

// buildLocked validates the region (it becomes part of every endpoint's
// host name) and builds the clients for it.
func (s *Source) buildLocked(ctx context.Context, region, origin string) error {
	if err := checkRegion(region, origin); err != nil {
		return err
	}
	if s.set.sdk != nil && s.set.sdk.Region != region {
		// The SDK's providers that call STS (web identity, role chains)
		// take the region when they are built: load again with it.
		if err := s.setupDefault(ctx, region); err != nil {
			return err
		}
	}
	creds := s.set.base
	if ar := s.cfg.AssumeRole; ar != nil {
		creds = stscreds.NewAssumeRoleProvider(s.stsClient(region), ar.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = ar.SessionName
			o.Duration = ar.Duration
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
		s.creds = aws.NewCredentialsCache(creds, cacheOptions)
	}
	client := func(svc awsjson.Service, configured string) awsjson.Config {
		url := configured
		if url == "" {
			url = svc.Endpoint(region, s.set.fips, s.set.dualStack)
		}
		return awsjson.Config{HTTPClient: s.set.http, Endpoint: url, Region: region, Credentials: s.creds}
	}
	s.sm = awsjson.NewSecretsManager(client(awsjson.SecretsManagerService, s.set.smURL))
	s.ssm = awsjson.NewSSM(client(awsjson.SSMService, s.set.ssmURL))
	s.region = region
	return nil
}

// stsClient is the STS client for AssumeRole, signed with the base
// credentials, sent once per call.
func (s *Source) stsClient(region string) *sts.Client {
	if sdk := s.set.sdk; sdk != nil {
		// The SDK resolves the endpoint (AWS_ENDPOINT_URL_STS, the
		// profile's services section, FIPS, dual-stack) from its sources.
		return sts.NewFromConfig(*sdk, func(o *sts.Options) {
			o.Region = region
			if o.BaseEndpoint != nil {
				explicitEndpoint(&o.EndpointOptions)
			}
		})
	}
	return sts.NewFromConfig(aws.Config{Region: region, HTTPClient: s.set.http, Credentials: s.set.base}, func(o *sts.Options) {
		o.Retryer = aws.NopRetryer{}
		if s.set.stsURL != "" {
			o.BaseEndpoint = aws.String(s.set.stsURL)
			return
		}
		o.EndpointOptions.UseFIPSEndpoint = fipsState(s.set.fips)
		o.EndpointOptions.UseDualStackEndpoint = dualStackState(s.set.dualStack)
	})
}

// credentials retrieves (cached) credentials, records their expiry and
// returns an operator-worded error. label is the source metric label of the
// expiry ("" for both).
func (s *Source) credentials(ctx context.Context, label string) (aws.Credentials, error) {
	if err := s.ready(ctx); err != nil {
		return aws.Credentials{}, err
	}
	c, err := s.creds.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, s.credentialError(err)
	}
	s.mu.Lock()
	s.from = c.Source
	s.mu.Unlock()
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

// wait blocks for the rate limit.
func (s *Source) wait(ctx context.Context) error {
	if s.limiter == nil {
		return nil
	}
	if err := s.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("aws: rate limit %g/s: %w", s.cfg.RateLimit, errors.Join(sources.ErrThrottled, err))
	}
	return nil
}

// caBundleClient trusts the PEM certificates in file (AWS_CA_BUNDLE) for
// the Secrets Manager, SSM and STS endpoints, as the SDK does.
func caBundleClient(file string) (aws.HTTPClient, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("aws: AWS_CA_BUNDLE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("aws: AWS_CA_BUNDLE %s: no PEM certificates", file)
	}
	return defaultHTTPClient().WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	}), nil
}
