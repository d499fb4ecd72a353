package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// IMDS timeouts. The SDK's own are 250ms and 500ms; a little more slack
// keeps a loaded host from being misdiagnosed, and a dropped token PUT (hop
// limit 1) is still reported within seconds.
const (
	imdsDialTimeout   = time.Second
	imdsHeaderTimeout = 2 * time.Second
)

const defaultIMDSEndpoint = "http://169.254.169.254"

// HopLimitFix is the command that lets containers reach IMDSv2.
const HopLimitFix = "aws ec2 modify-instance-metadata-options --instance-id <instance-id> --http-put-response-hop-limit 2 --http-endpoint enabled"

// IMDSProblem is what went wrong talking to the instance metadata service.
type IMDSProblem int

// The IMDS problems worded separately.
const (
	IMDSUnknown            IMDSProblem = iota
	IMDSRefused                        // connection refused: not EC2, or the endpoint is disabled
	IMDSTokenRefused                   // the token PUT got 403/404/405
	IMDSTokenTimeout                   // the token PUT got no answer: hop limit 1 in a container
	IMDSTimeout                        // another request got no answer
	IMDSNoRole                         // 404 on iam/security-credentials: no instance profile
	IMDSBadCredentials                 // malformed credential document or an error code
	IMDSExpiredCredentials             // credentials already expired
	IMDSThrottled                      // HTTP 429: too many requests from this instance
)

// IMDSError is a diagnosed IMDS failure. Its message says what to do.
type IMDSError struct {
	Problem  IMDSProblem
	Endpoint string
	Status   int // HTTP status where one was received
	Err      error
}

func (e *IMDSError) Error() string {
	ep := e.Endpoint
	switch e.Problem {
	case IMDSRefused:
		return fmt.Sprintf("aws: imds: connection to %s refused: this host is not an EC2 instance or its metadata endpoint is disabled "+
			"(enable it with `aws ec2 modify-instance-metadata-options --instance-id <instance-id> --http-endpoint enabled`); "+
			"off EC2 use sources.aws.credentials: default", ep)
	case IMDSTokenRefused:
		return fmt.Sprintf("aws: imds: the IMDSv2 token request (PUT %s/latest/api/token) was refused with HTTP %d: "+
			"a proxy or firewall in front of the metadata service blocks IMDSv2 PUTs; phase-sidecar never falls back to IMDSv1", ep, e.Status)
	case IMDSTokenTimeout:
		return fmt.Sprintf("aws: imds: the IMDSv2 token request (PUT %s/latest/api/token) got no answer: "+
			"inside a container this is the instance's metadata hop limit of 1; raise it to 2 with `%s`", ep, HopLimitFix)
	case IMDSTimeout:
		return fmt.Sprintf("aws: imds: %s did not answer in time: %v", ep, e.Err)
	case IMDSNoRole:
		return fmt.Sprintf("aws: imds: no IAM role is attached to this instance (HTTP 404 on %s/latest/meta-data/iam/security-credentials/): "+
			"attach an instance profile (`aws ec2 associate-iam-instance-profile --instance-id <instance-id> --iam-instance-profile Name=<profile>`)", ep)
	case IMDSBadCredentials:
		return fmt.Sprintf("aws: imds: the instance role credentials from %s are malformed or unavailable: %v", ep, e.Err)
	case IMDSExpiredCredentials:
		return fmt.Sprintf("aws: imds: the instance role credentials from %s are already expired: %v; check the host clock", ep, e.Err)
	case IMDSThrottled:
		return fmt.Sprintf("aws: imds: %s throttled the request (HTTP 429)", ep)
	default:
		return fmt.Sprintf("aws: imds: %s: %v", ep, e.Err)
	}
}

// Unwrap gives the sources sentinel the engine classifies on, and the cause.
func (e *IMDSError) Unwrap() []error {
	s := sources.ErrUnavailable
	switch e.Problem {
	case IMDSNoRole, IMDSBadCredentials, IMDSExpiredCredentials:
		s = sources.ErrAuth
	case IMDSThrottled:
		s = sources.ErrThrottled
	}
	if e.Err == nil {
		return []error{s}
	}
	return []error{s, e.Err}
}

// imdsDiag is the HTTP client under the IMDS client. It passes every request
// on and notes the first failure it recognises, because the SDK's error
// chain for a failed token PUT cannot be unwrapped; it learns the endpoint
// the SDK resolved from the requests, for messages.
type imdsDiag struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}

	mu       sync.Mutex
	endpoint string
	noted    *IMDSError
}

func (d *imdsDiag) Do(req *http.Request) (*http.Response, error) {
	isToken := req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "/api/token")
	d.mu.Lock()
	d.endpoint = req.URL.Scheme + "://" + req.URL.Host
	d.mu.Unlock()
	resp, err := d.next.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			d.note(IMDSRefused, 0, nil)
		case isToken && isTimeout(err):
			d.note(IMDSTokenTimeout, 0, err)
		case isTimeout(err):
			d.note(IMDSTimeout, 0, err)
		}
		return resp, err
	}
	switch {
	case isToken && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed):
		d.note(IMDSTokenRefused, resp.StatusCode, nil)
	case !isToken && strings.Contains(req.URL.Path, "/iam/security-credentials") && resp.StatusCode == http.StatusNotFound:
		d.note(IMDSNoRole, resp.StatusCode, nil)
	case resp.StatusCode == http.StatusTooManyRequests:
		d.note(IMDSThrottled, resp.StatusCode, nil)
	}
	return resp, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

func (d *imdsDiag) note(p IMDSProblem, status int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.noted == nil {
		d.noted = &IMDSError{Problem: p, Endpoint: d.epLocked(), Status: status, Err: err}
	}
}

func (d *imdsDiag) ep() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.epLocked()
}

func (d *imdsDiag) epLocked() string {
	if d.endpoint == "" {
		return defaultIMDSEndpoint
	}
	return d.endpoint
}

func (d *imdsDiag) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.noted = nil
}

// explain returns the diagnosed error for err, or err in an IMDSError of
// unknown kind.
func (d *imdsDiag) explain(err error) error {
	var ie *IMDSError
	if errors.As(err, &ie) {
		return ie
	}
	d.mu.Lock()
	noted := d.noted
	d.mu.Unlock()
	if noted != nil {
		e := *noted
		if e.Err == nil {
			e.Err = err
		}
		return &e
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		// ec2rolecreds turns a Code other than "Success" into an API error.
		return &IMDSError{Problem: IMDSBadCredentials, Endpoint: d.ep(), Err: fmt.Errorf("code %q", ae.ErrorCode())}
	}
	if strings.Contains(err.Error(), "failed to decode") || strings.Contains(err.Error(), "empty EC2 IMDS role list") {
		// The decoder's message can quote the document; leave it out.
		return &IMDSError{Problem: IMDSBadCredentials, Endpoint: d.ep(), Err: errors.New("the credential document is not valid JSON credentials")}
	}
	return &IMDSError{Problem: IMDSUnknown, Endpoint: d.ep(), Err: err}
}

// imdsClient is the IMDSv2-only client with diagnosis: its errors are
// IMDSErrors. It serves the instance-role credentials of both modes (the
// SDK's default chain calls it through ec2rolecreds) and the placement
// region.
type imdsClient struct {
	c    *imds.Client
	diag *imdsDiag
}

var _ ec2rolecreds.GetMetadataAPIClient = (*imdsClient)(nil)

// newIMDS builds the client of "imds" mode.
func newIMDS(o imds.Options) *imdsClient {
	m := &imdsClient{diag: &imdsDiag{}}
	m.c = imds.New(o, m.options)
	return m
}

// options make any IMDS client this package's: no IMDSv1 fallback under
// any setting, one attempt per call, and short timeouts so that a missing
// or hop-limited metadata service is diagnosed within seconds.
func (m *imdsClient) options(o *imds.Options) {
	m.diag.next = awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = imdsDialTimeout }).
		WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = imdsHeaderTimeout })
	o.HTTPClient = m.diag
	o.EnableFallback = aws.FalseTernary
	o.Retryer = aws.NopRetryer{}
}

func (m *imdsClient) GetMetadata(ctx context.Context, in *imds.GetMetadataInput, opts ...func(*imds.Options)) (*imds.GetMetadataOutput, error) {
	m.diag.reset()
	out, err := m.c.GetMetadata(ctx, in, opts...)
	if err != nil {
		return nil, m.diag.explain(err)
	}
	return out, nil
}

func (m *imdsClient) GetRegion(ctx context.Context, in *imds.GetRegionInput) (*imds.GetRegionOutput, error) {
	m.diag.reset()
	out, err := m.c.GetRegion(ctx, in)
	if err != nil {
		return nil, m.diag.explain(err)
	}
	return out, nil
}

// credentials is the instance role's provider for "imds" mode.
func (m *imdsClient) credentials() *imdsCredentials {
	return &imdsCredentials{provider: ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = m }), diag: m.diag}
}

// imdsCredentials is the instance-role provider with diagnosis: its errors
// are IMDSErrors, and credentials that are incomplete or already expired
// are refused rather than cached. Like the SDK's provider it keeps serving
// credentials that are still valid when a refresh fails (the cache asks it
// through HandleFailToRefresh), so a short IMDS outage fails no fetch.
type imdsCredentials struct {
	provider *ec2rolecreds.Provider
	diag     *imdsDiag
	now      func() time.Time // for tests; nil means time.Now
}

var (
	_ aws.HandleFailRefreshCredentialsCacheStrategy = (*imdsCredentials)(nil)
	_ aws.AdjustExpiresByCredentialsCacheStrategy   = (*imdsCredentials)(nil)
)

func (p *imdsCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := p.provider.Retrieve(ctx)
	if err != nil {
		var ie *IMDSError
		if errors.As(err, &ie) {
			return c, ie // without ec2rolecreds' prefix
		}
		return c, p.diag.explain(err)
	}
	return p.check(c)
}

func (p *imdsCredentials) HandleFailToRefresh(ctx context.Context, prev aws.Credentials, err error) (aws.Credentials, error) {
	c, herr := p.provider.HandleFailToRefresh(ctx, prev, err)
	if herr != nil {
		return c, err // keep the diagnosis
	}
	return c, nil
}

func (p *imdsCredentials) AdjustExpiresBy(c aws.Credentials, d time.Duration) (aws.Credentials, error) {
	return p.provider.AdjustExpiresBy(c, d)
}

func (p *imdsCredentials) check(c aws.Credentials) (aws.Credentials, error) {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return aws.Credentials{}, &IMDSError{Problem: IMDSBadCredentials, Endpoint: p.diag.ep(), Err: errors.New("AccessKeyId or SecretAccessKey is empty")}
	}
	now := time.Now
	if p.now != nil {
		now = p.now
	}
	if c.CanExpire && !c.Expires.After(now()) {
		return aws.Credentials{}, &IMDSError{Problem: IMDSExpiredCredentials, Endpoint: p.diag.ep(),
			Err: fmt.Errorf("expiration %s", c.Expires.UTC().Format(time.RFC3339))}
	}
	return c, nil
}
