// Package awsjson speaks the AWS JSON 1.1 protocol for the five reads the
// AWS source makes: Secrets Manager GetSecretValue and BatchGetSecretValue,
// SSM GetParameter, GetParameters and GetParametersByPath. It stands in for
// the SDK's generated service clients, whose packages cost megabytes of
// resident memory in every deployment (see docs/aws.md); its tests hold it
// to those clients: the same signed bytes, the same decoded answers and
// errors, the same endpoints.
//
// A call is POST / with X-Amz-Target, signed with the SDK's SigV4 signer,
// and sent once: retrying is the caller's decision (the engine's backoff
// and circuit breaker), except that a request that died on a kept-alive
// connection AWS had already closed is sent again at once, on a new one.
// Errors are the types the SDK's clients return, so that callers classify
// both alike with errors.As.
package awsjson

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/awsregion"
)

// Service names one AWS service the way the protocol and the endpoint
// rules need it.
type Service struct {
	ID      string // the SDK's service ID, in errors: "Secrets Manager", "SSM"
	Signing string // SigV4 signing name
	Target  string // X-Amz-Target prefix
	Host    string // endpoint host prefix
	// rule overrides the standard endpoint rule where the service's own
	// rules differ (endpoints.go).
	rule func(p awsregion.Partition, fips, dualStack bool) (host, suffix string, ok bool)
}

// Config is what a client needs besides its service.
type Config struct {
	HTTPClient  aws.HTTPClient // nil: the SDK's default transport
	Endpoint    string         // the URL requests go to (Service.Endpoint, or one configured)
	Region      string         // the signing region
	Credentials aws.CredentialsProvider
	Now         func() time.Time // the signing clock; nil: time.Now
}

// Client calls one service.
type Client struct {
	svc    Service
	cfg    Config
	url    string
	signer *v4.Signer
}

const contentType = "application/x-amz-json-1.1"

// New returns a client for svc.
func New(svc Service, cfg Config) *Client {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = awshttp.NewBuildableClient()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	url := cfg.Endpoint
	if i := strings.Index(url, "://"); i >= 0 && !strings.Contains(url[i+3:], "/") {
		url += "/" // the SDK joins the operation's path "/" onto the endpoint
	}
	return &Client{svc: svc, cfg: cfg, url: url, signer: v4.NewSigner()}
}

// URL is where the client sends its requests.
func (c *Client) URL() string { return c.url }

// wiper is a response that holds secret bytes, cleared when the answer is
// dropped undecoded.
type wiper interface{ Wipe() }

// Call sends op with the JSON of in and decodes the answer into out. Errors
// are *smithy.OperationError around what the SDK's clients return: an
// *awshttp.ResponseError (status, headers, request id) around a
// smithy.APIError when the body names one; *smithyhttp.RequestSendError
// when AWS was not reached; *smithy.CanceledError when ctx ended.
func (c *Client) Call(ctx context.Context, op string, in, out any) error {
	err := c.send(ctx, op, in, out)
	if err == nil {
		return nil
	}
	if w, ok := out.(wiper); ok {
		w.Wipe()
	}
	return &smithy.OperationError{ServiceID: c.svc.ID, OperationName: op, Err: err}
}

func (c *Client) send(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	stale, err := c.attempt(ctx, op, body, hash, out)
	if stale {
		// The kept-alive connection was already dead: AWS never answered
		// on it. One more try, on a new connection; every operation here
		// is a read.
		_, err = c.attempt(ctx, op, body, hash, out)
	}
	return err
}

// attempt sends the request once. stale reports a transport error on a
// reused connection, which is worth one more try.
func (c *Client) attempt(ctx context.Context, op string, body []byte, hash string, out any) (stale bool, err error) {
	var reused bool
	traced := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
	})
	req, err := c.request(traced, op, body, hash)
	if err != nil {
		return false, err
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// As smithy's client handler: cancelled, not unreachable.
			return false, &smithy.CanceledError{Err: ctx.Err()}
		}
		// A timeout is no dead connection: the request may still be in
		// AWS's hands, and a hanging AWS must not get it twice.
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		return reused && !timeout, &smithyhttp.RequestSendError{Err: err}
	}
	defer resp.Body.Close()
	buf, err := readBody(resp.Body, resp.ContentLength)
	defer clear(buf) // success bodies carry secret values
	switch {
	case errors.Is(err, errTooLarge):
		// AWS answered something this client will not read.
		return false, responseError(resp, &smithy.DeserializationError{Err: fmt.Errorf("%s response: %w", op, err)})
	case err != nil && ctx.Err() != nil:
		return false, &smithy.CanceledError{Err: ctx.Err()}
	case err != nil:
		return false, &smithyhttp.RequestSendError{Err: fmt.Errorf("read response: %w", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, responseError(resp, decodeError(resp.Header, buf))
	}
	if err := json.Unmarshal(buf, out); err != nil {
		if w, ok := out.(wiper); ok {
			w.Wipe()
		}
		// The decoder's message can quote the body; name only its size.
		return false, responseError(resp, &smithy.DeserializationError{Err: fmt.Errorf("undecodable %s response (%d bytes)", op, len(buf))})
	}
	return false, nil
}

// request builds the signed request.
func (c *Client) request(ctx context.Context, op string, body []byte, hash string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		// A configured endpoint (AWS_ENDPOINT_URL*) may carry a credential;
		// url.Parse's error quotes the URL whole, so only its reason is kept.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("endpoint %q: %w", secret.RedactURL(c.url), err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Amz-Target", c.svc.Target+"."+op)
	creds, err := c.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("retrieve credentials: %w", err)
	}
	if err := c.signer.SignHTTP(ctx, creds, req, hash, c.svc.Signing, c.cfg.Region, c.cfg.Now().UTC()); err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	return req, nil
}

func responseError(resp *http.Response, err error) error {
	return &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: err},
		RequestID:     resp.Header.Get("X-Amzn-Requestid"),
	}
}

// decodeError reads an AWS JSON error as the SDK's awsjson protocol does:
// the code from the X-Amzn-ErrorType header, else the body's __type, else
// its code, without a ":uri" suffix or "namespace#" prefix, and the
// message (any case); "UnknownError" for either when absent. A body that is
// not JSON (a proxy's page) is a deserialization error, and the HTTP status
// has to speak.
func decodeError(h http.Header, body []byte) error {
	var e struct {
		Type    string `json:"__type"`
		Message string
		Code    any
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &e); err != nil {
			// The decoder's message can quote the body; name only its size.
			return &smithy.DeserializationError{Err: fmt.Errorf("undecodable error body (%d bytes)", len(body))}
		}
	}
	code := h.Get("X-Amzn-Errortype")
	if code == "" {
		code = e.Type
	}
	if c, ok := e.Code.(string); ok && code == "" {
		code = c
	}
	if i := strings.IndexByte(code, ':'); i >= 0 {
		code = code[:i]
	}
	if i := strings.IndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	if code == "" {
		code = "UnknownError"
	}
	msg := e.Message
	if msg == "" {
		msg = "UnknownError"
	}
	return &smithy.GenericAPIError{Code: code, Message: msg}
}
