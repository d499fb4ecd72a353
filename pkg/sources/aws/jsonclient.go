package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// jsonClient speaks the AWS JSON 1.1 protocol to one service: POST / with
// X-Amz-Target, signed with SigV4, retried by the SDK's standard retryer
// driven by hand. It replaces the SDK's generated Secrets Manager and SSM
// clients, whose packages cost megabytes of resident memory at init in
// every deployment.
type jsonClient struct {
	http    aws.HTTPClient
	url     string // the endpoint, path "/" when it has none
	service string // SigV4 signing name: "secretsmanager", "ssm"
	target  string // X-Amz-Target prefix: "secretsmanager", "AmazonSSM"
	name    string // for errors: "Secrets Manager", "SSM"
	region  string
	creds   aws.CredentialsProvider
	retryer aws.RetryerV2
	signer  *v4.Signer
	now     func() time.Time                           // nil: time.Now
	sleep   func(context.Context, time.Duration) error // nil: a timer
}

const jsonContentType = "application/x-amz-json-1.1"

func newJSONClient(httpClient aws.HTTPClient, endpoint, service, target, name, region string, creds aws.CredentialsProvider) *jsonClient {
	if httpClient == nil {
		httpClient = awshttp.NewBuildableClient()
	}
	if i := strings.Index(endpoint, "://"); i >= 0 && !strings.Contains(endpoint[i+3:], "/") {
		endpoint += "/"
	}
	return &jsonClient{
		http: httpClient, url: endpoint, service: service, target: target, name: name, region: region,
		creds: creds, retryer: newRetryer(), signer: v4.NewSigner(),
	}
}

// serviceEndpoint is the public endpoint of service in region.
func serviceEndpoint(service, region string) string {
	suffix := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = "amazonaws.com.cn"
	}
	return "https://" + service + "." + region + "." + suffix
}

// wiper is a response that holds secret bytes, cleared when the answer is
// dropped undecoded.
type wiper interface{ wipe() }

// call sends op with the JSON of in and decodes the answer into out. Errors
// are *smithy.OperationError around what the SDK's clients return: an
// *awshttp.ResponseError carrying the status and, when the body names one, a
// smithy.APIError; *smithyhttp.RequestSendError when AWS was not reached;
// *retry.MaxAttemptsError once retries are spent.
func (c *jsonClient) call(ctx context.Context, op string, in, out any) error {
	err := c.retrying(ctx, op, in, out)
	if err == nil {
		return nil
	}
	if w, ok := out.(wiper); ok {
		w.wipe()
	}
	return &smithy.OperationError{ServiceID: c.name, OperationName: op, Err: err}
}

// retrying follows the SDK's retry middleware (aws/retry.Attempt): an
// initial token, the retryer's verdict, a retry-quota token and its delay.
func (c *jsonClient) retrying(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	release := func(error) error { return nil }
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		releaseAttempt := func(error) error { return nil }
		if attempt == 1 {
			if releaseAttempt, err = c.retryer.GetAttemptToken(ctx); err != nil {
				return fmt.Errorf("get retry send token: %w", err)
			}
		}
		err := c.attempt(ctx, op, body, hash, out)
		_ = release(err)
		_ = releaseAttempt(err)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err // no retry token, no back-off: nobody waits for the answer
		}
		if !c.retryer.IsErrorRetryable(err) {
			return err
		}
		if attempt >= c.retryer.MaxAttempts() {
			return &retry.MaxAttemptsError{Attempt: attempt, Err: err}
		}
		var quotaErr error
		if release, quotaErr = c.retryer.GetRetryToken(ctx, err); quotaErr != nil {
			return errors.Join(err, quotaErr)
		}
		delay, derr := c.retryer.RetryDelay(attempt, err)
		if derr != nil {
			return derr
		}
		if serr := c.wait(ctx, delay); serr != nil {
			return &aws.RequestCanceledError{Err: serr}
		}
	}
}

func (c *jsonClient) wait(ctx context.Context, d time.Duration) error {
	if c.sleep != nil {
		return c.sleep(ctx, d)
	}
	return sleep(ctx, d)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *jsonClient) attempt(ctx context.Context, op string, body []byte, hash string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", c.url, err)
	}
	req.Header.Set("Content-Type", jsonContentType)
	req.Header.Set("X-Amz-Target", c.target+"."+op)
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve credentials: %w", err)
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	if err := c.signer.SignHTTP(ctx, creds, req, hash, c.service, c.region, now().UTC()); err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// As smithy's client handler: cancelled, not unreachable, and
			// never retried.
			return &smithy.CanceledError{Err: ctx.Err()}
		}
		return &smithyhttp.RequestSendError{Err: err}
	}
	defer resp.Body.Close()
	buf, err := readBody(resp.Body, resp.ContentLength)
	defer clear(buf) // success bodies carry secret values
	switch {
	case errors.Is(err, errTooLarge):
		// AWS was reached and answered something this client will not
		// read: a deserialization failure, which no retry fixes.
		return responseError(resp, &smithy.DeserializationError{Err: fmt.Errorf("%s response: %w", op, err)})
	case err != nil && ctx.Err() != nil:
		return &smithy.CanceledError{Err: ctx.Err()}
	case err != nil:
		return &smithyhttp.RequestSendError{Err: fmt.Errorf("read response: %w", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp, decodeError(resp.Header, buf))
	}
	if err := json.Unmarshal(buf, out); err != nil {
		if w, ok := out.(wiper); ok {
			w.wipe()
		}
		// The decoder's message can quote the body; name only its size.
		return responseError(resp, &smithy.DeserializationError{Err: fmt.Errorf("undecodable %s response (%d bytes)", op, len(buf))})
	}
	return nil
}

func responseError(resp *http.Response, err error) error {
	return &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: err},
		RequestID:     resp.Header.Get("X-Amzn-Requestid"),
	}
}

// decodeError reads an AWS JSON error: the code from the X-Amzn-ErrorType
// header or the body's __type (or code), without any "namespace#" prefix or
// ":uri" suffix, and the message. Without a code the body is not an AWS
// error (a proxy's page) and the HTTP status has to speak.
func decodeError(h http.Header, body []byte) error {
	var e struct {
		Type         string `json:"__type"`
		Code         string `json:"code"`
		Message      string `json:"message"`
		MessageUpper string `json:"Message"`
	}
	decoded := json.Unmarshal(body, &e) == nil
	code := h.Get("X-Amzn-Errortype")
	if code == "" {
		code = e.Type
	}
	if code == "" {
		code = e.Code
	}
	code, _, _ = strings.Cut(code, ":")
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	if code == "" {
		if !decoded {
			return &smithy.DeserializationError{Err: fmt.Errorf("undecodable error body (%d bytes)", len(body))}
		}
		return &smithy.DeserializationError{Err: errors.New("error body without an error code")}
	}
	msg := e.Message
	if msg == "" {
		msg = e.MessageUpper
	}
	return &smithy.GenericAPIError{Code: code, Message: msg}
}

// maxBody bounds a response: BatchGetSecretValue answers up to 20 secrets of
// 64 KiB each, encoded.
const maxBody = 16 << 20

var errTooLarge = fmt.Errorf("response larger than %d bytes", maxBody)

// readBody reads r whole, clearing every buffer it outgrows so that no copy
// of a secret value is left behind for the garbage collector.
func readBody(r io.Reader, size int64) ([]byte, error) {
	n := 4096
	if size > 0 && size <= maxBody {
		n = int(size) + 1 // +1: EOF without a grow
	}
	buf := make([]byte, 0, n)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxBody {
				clear(buf)
				return nil, errTooLarge
			}
			bigger := make([]byte, len(buf), 2*cap(buf))
			copy(bigger, buf)
			clear(buf)
			buf = bigger
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// secretText is a JSON string decoded straight into bytes, so that a secret
// value never becomes an immutable Go string.
type secretText []byte

func (t *secretText) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	b, ok := unquote(data)
	if !ok {
		return errors.New("malformed JSON string") // never quote the data
	}
	*t = b
	return nil
}

func (t *secretText) wipe() {
	if t != nil {
		clear(*t)
	}
}

// unquote decodes a JSON string literal into new bytes.
func unquote(data []byte) ([]byte, bool) {
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return nil, false
	}
	s := data[1 : len(data)-1]
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(s) {
			clear(out)
			return nil, false
		}
		switch s[i+1] {
		case '"', '\\', '/':
			out = append(out, s[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s[i+2:])
			if !ok {
				clear(out)
				return nil, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(s[min(i+2, len(s)):]); ok && i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			clear(out)
			return nil, false
		}
		i += 2
	}
	return out, true
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
