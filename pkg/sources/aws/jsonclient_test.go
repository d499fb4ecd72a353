package aws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// answer is one canned HTTP response of the fake transport.
type answer struct {
	status int
	header http.Header
	body   string
	err    error
}

// scripted is an HTTP client that records requests (with their bodies) and
// plays answers in order, repeating the last.
type scripted struct {
	mu      sync.Mutex
	answers []answer
	reqs    []*http.Request
	bodies  []string
}

func (s *scripted) Do(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	s.bodies = append(s.bodies, string(body))
	a := s.answers[min(len(s.reqs), len(s.answers))-1]
	if a.err != nil {
		return nil, a.err
	}
	h := a.header
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: a.status, Header: h, Body: io.NopCloser(strings.NewReader(a.body)), ContentLength: -1, Request: r}, nil
}

// testClient is an SSM client over the script, with no real sleeping.
func testClient(t *testing.T, h *scripted) (*jsonClient, *[]time.Duration) {
	t.Helper()
	c := newJSONClient(h, "https://ssm.eu-west-1.amazonaws.com", "ssm", "AmazonSSM", "SSM", "eu-west-1",
		credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-key", "session-token"))
	c.now = func() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }
	var slept []time.Duration
	c.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	return c, &slept
}

func TestJSONClientSignsRequest(t *testing.T) {
	t.Parallel()
	h := &scripted{answers: []answer{{status: 200, body: `{"Parameter":{"Name":"/x","Value":"v\"\\\n\u00e9\ud83d\ude00","Version":7}}`}}}
	c, _ := testClient(t, h)
	out, err := ssmClient{c}.GetParameter(context.Background(), &getParameterInput{Name: "/x", WithDecryption: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out.Parameter.Value); got != "v\"\\\né😀" || out.Parameter.Version != 7 {
		t.Errorf("decoded %q version %d", got, out.Parameter.Version)
	}
	r := h.reqs[0]
	if r.Method != http.MethodPost || r.URL.String() != "https://ssm.eu-west-1.amazonaws.com/" {
		t.Errorf("%s %s, want POST to the endpoint's /", r.Method, r.URL)
	}
	for k, want := range map[string]string{
		"X-Amz-Target":         "AmazonSSM.GetParameter",
		"Content-Type":         "application/x-amz-json-1.1",
		"X-Amz-Date":           "20300102T030405Z",
		"X-Amz-Security-Token": "session-token",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// The signature over these fixed inputs, as botocore computes it
	// independently of the SDK's signer.
	const want = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20300102/eu-west-1/ssm/aws4_request, " +
		"SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target, " +
		"Signature=ac3befaa83acf642ba4723960f88f44900a262ce237b87bee4322a3b726005c1"
	if auth := r.Header.Get("Authorization"); auth != want {
		t.Errorf("Authorization\n%s\nwant\n%s", auth, want)
	}
	if h.bodies[0] != `{"Name":"/x","WithDecryption":true}` {
		t.Errorf("body %s", h.bodies[0])
	}
}

func TestJSONClientErrors(t *testing.T) {
	t.Parallel()
	s := fakeSource(nil, nil, config.AWS{})
	tests := []struct {
		name     string
		answer   answer
		code     string // "" when no API error is expected
		msg      string
		sentinel error
	}{
		{"namespaced type", answer{status: 400, body: `{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`},
			"ResourceNotFoundException", "Secrets Manager can't find the specified secret.", sources.ErrNotFound},
		{"plain type, capital Message", answer{status: 400, body: `{"__type":"ParameterNotFound","Message":"no such parameter"}`},
			"ParameterNotFound", "no such parameter", sources.ErrNotFound},
		{"header code", answer{status: 400, header: http.Header{"X-Amzn-Errortype": {"AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/"}}, body: `{"message":"not authorized"}`},
			"AccessDeniedException", "not authorized", sources.ErrPermission},
		{"expired token", answer{status: 400, body: `{"__type":"ExpiredTokenException","message":"expired"}`}, "ExpiredTokenException", "expired", sources.ErrAuth},
		{"proxy 403 page", answer{status: 403, body: `<html>Forbidden</html>`}, "", "", sources.ErrPermission},
		{"unknown 400", answer{status: 400, body: `{"__type":"ValidationException","message":"bad name"}`}, "ValidationException", "bad name", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &scripted{answers: []answer{tt.answer}}
			c, _ := testClient(t, h)
			_, err := ssmClient{c}.GetParameter(context.Background(), &getParameterInput{Name: "/x"})
			var ae smithy.APIError
			switch {
			case tt.code == "" && errors.As(err, &ae):
				t.Errorf("%v: an API error from a body without a code", err)
			case tt.code != "" && (!errors.As(err, &ae) || ae.ErrorCode() != tt.code || ae.ErrorMessage() != tt.msg):
				t.Errorf("%v: want API error %s %q", err, tt.code, tt.msg)
			}
			var re *awshttp.ResponseError
			if !errors.As(err, &re) || re.HTTPStatusCode() != tt.answer.status {
				t.Errorf("%v: the HTTP status is not kept", err)
			}
			if len(h.reqs) != 1 {
				t.Errorf("%d requests, want 1 (not retryable)", len(h.reqs))
			}
			if tt.sentinel != nil {
				if cerr := s.classify("aws-ssm: get parameter \"/x\"", "ssm:GetParameter", err, nil); !errors.Is(cerr, tt.sentinel) {
					t.Errorf("classified %v, want %v", cerr, tt.sentinel)
				}
			}
		})
	}
}

func TestJSONClientRetries(t *testing.T) {
	t.Parallel()
	throttle := answer{status: 400, body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`}
	unavailable := answer{status: 503, body: `<html>Service Unavailable</html>`}
	ok := answer{status: 200, body: `{"Parameter":{"Name":"/x","Value":"v","Version":1}}`}
	tests := []struct {
		name     string
		answers  []answer
		calls    int
		sentinel error // nil: success
	}{
		{"throttled twice then ok", []answer{throttle, throttle, ok}, 3, nil},
		{"5xx then ok", []answer{unavailable, ok}, 2, nil},
		{"connection refused then ok", []answer{{err: syscall.ECONNREFUSED}, ok}, 2, nil},
		{"throttled throughout", []answer{throttle}, 3, sources.ErrThrottled},
		{"5xx throughout", []answer{unavailable}, 3, sources.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &scripted{answers: tt.answers}
			c, slept := testClient(t, h)
			_, err := ssmClient{c}.GetParameter(context.Background(), &getParameterInput{Name: "/x"})
			if len(h.reqs) != tt.calls || len(*slept) != tt.calls-1 {
				t.Errorf("%d requests and %d back-offs, want %d and %d", len(h.reqs), len(*slept), tt.calls, tt.calls-1)
			}
			// Each attempt is signed afresh over the same body.
			for i, b := range h.bodies {
				if b != h.bodies[0] || h.reqs[i].Header.Get("Authorization") == "" {
					t.Errorf("attempt %d: body %q, signed %v", i, b, h.reqs[i].Header.Get("Authorization") != "")
				}
			}
			if tt.sentinel == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var me *retry.MaxAttemptsError
			if !errors.As(err, &me) {
				t.Errorf("%v: want MaxAttemptsError", err)
			}
			if cerr := fakeSource(nil, nil, config.AWS{}).classify("aws-ssm: get parameter \"/x\"", "ssm:GetParameter", err, nil); !errors.Is(cerr, tt.sentinel) {
				t.Errorf("classified %v, want %v", cerr, tt.sentinel)
			}
		})
	}
}

// TestNewWiresClients: the clients New builds send each service's
// operations to its endpoint, with its X-Amz-Target prefix and SigV4
// signing name, and decode its shapes.
func TestNewWiresClients(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer string
		call   func(*Source) (string, error) // returns what it decoded
		url    string
		target string
		scope  string
		body   string
		want   string
	}{
		{
			name:   "Secrets Manager",
			answer: `{"ARN":"arn:x","Name":"prod/db","SecretBinary":"AAEC/w==","VersionId":"v1","VersionStages":["AWSCURRENT"]}`,
			call: func(s *Source) (string, error) {
				out, err := s.sm.GetSecretValue(context.Background(), &getSecretValueInput{SecretId: "prod/db", VersionStage: stageCurrent})
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("string %v binary %q version %s", out.SecretString != nil, out.SecretBinary, out.VersionId), nil
			},
			url: "https://secretsmanager.eu-west-1.amazonaws.com/", target: "secretsmanager.GetSecretValue", scope: "/eu-west-1/secretsmanager/aws4_request",
			body: `{"SecretId":"prod/db","VersionStage":"AWSCURRENT"}`, want: "string false binary \"\\x00\\x01\\x02\\xff\" version v1",
		},
		{
			name:   "SSM",
			answer: `{"Parameter":{"Name":"/x","Value":"v","Version":3}}`,
			call: func(s *Source) (string, error) {
				out, err := s.ssm.GetParameter(context.Background(), &getParameterInput{Name: "/x", WithDecryption: true})
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%s %d", out.Parameter.Value, out.Parameter.Version), nil
			},
			url: "https://ssm.eu-west-1.amazonaws.com/", target: "AmazonSSM.GetParameter", scope: "/eu-west-1/ssm/aws4_request",
			body: `{"Name":"/x","WithDecryption":true}`, want: "v 3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &scripted{answers: []answer{{status: 200, body: tt.answer}}}
			s, err := New(context.Background(), config.AWS{Region: "eu-west-1", Credentials: CredentialsDefault}, Options{
				Env:        envMap("AWS_ACCESS_KEY_ID", "AKIDTEST", "AWS_SECRET_ACCESS_KEY", "secret-key"),
				HTTPClient: h,
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := tt.call(s)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("decoded %s, want %s", got, tt.want)
			}
			r := h.reqs[0]
			if r.Method != http.MethodPost || r.URL.String() != tt.url {
				t.Errorf("%s %s, want POST %s", r.Method, r.URL, tt.url)
			}
			if got := r.Header.Get("X-Amz-Target"); got != tt.target {
				t.Errorf("target %q, want %q", got, tt.target)
			}
			if got := r.Header.Get("Authorization"); !strings.Contains(got, "Credential=AKIDTEST/") || !strings.Contains(got, tt.scope) {
				t.Errorf("Authorization %q, want scope %s", got, tt.scope)
			}
			if h.bodies[0] != tt.body {
				t.Errorf("body %s, want %s", h.bodies[0], tt.body)
			}
		})
	}
}

// TestJSONClientOversizedResponse: an answer over the size limit is a
// deserialization error, not retried, and not "cannot reach AWS".
func TestJSONClientOversizedResponse(t *testing.T) {
	t.Parallel()
	h := &scripted{answers: []answer{{status: 200, body: strings.Repeat(" ", maxBody+1)}}}
	c, slept := testClient(t, h)
	_, err := ssmClient{c}.GetParameter(context.Background(), &getParameterInput{Name: "/x"})
	var de *smithy.DeserializationError
	var re *awshttp.ResponseError
	var se *smithyhttp.RequestSendError
	switch {
	case !errors.As(err, &de) || !errors.Is(err, errTooLarge):
		t.Errorf("%v: want a DeserializationError for the size", err)
	case !errors.As(err, &re) || re.HTTPStatusCode() != 200:
		t.Errorf("%v: want the response error path", err)
	case errors.As(err, &se):
		t.Errorf("%v: a RequestSendError", err)
	}
	if len(h.reqs) != 1 || len(*slept) != 0 {
		t.Errorf("%d requests and %d back-offs, want 1 and 0", len(h.reqs), len(*slept))
	}
	cerr := fakeSource(nil, nil, config.AWS{}).classify("aws-ssm: get parameter \"/x\"", "ssm:GetParameter", err, nil)
	if strings.Contains(cerr.Error(), "cannot reach AWS") || errors.Is(cerr, sources.ErrUnavailable) {
		t.Errorf("classified %v", cerr)
	}
}

// blocking is an HTTP client that announces each request and, for
// blockAt, blocks until the request's context ends, as a transport does;
// other requests get answer.
type blocking struct {
	answer  answer
	blockAt int // 1-based request number that hangs; 0: none
	arrived chan int
	mu      sync.Mutex
	n       int
}

func (b *blocking) Do(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	b.n++
	n := b.n
	b.mu.Unlock()
	b.arrived <- n
	if n == b.blockAt {
		<-r.Context().Done()
		return nil, &url.Error{Op: "Post", URL: r.URL.String(), Err: r.Context().Err()}
	}
	return &http.Response{StatusCode: b.answer.status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(b.answer.body)), ContentLength: -1, Request: r}, nil
}

// TestJSONClientCancellation: cancelling mid-request or during the retry
// back-off returns promptly with context.Canceled, without another attempt.
func TestJSONClientCancellation(t *testing.T) {
	t.Parallel()
	unavailable := answer{status: 503, body: `<html>Service Unavailable</html>`}
	tests := []struct {
		name     string
		blockAt  int
		requests int
		backoff  bool // cancel once the back-off has begun
	}{
		{"mid-request", 1, 1, false},
		{"during back-off", 0, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &blocking{answer: unavailable, blockAt: tt.blockAt, arrived: make(chan int, 10)}
			c := newJSONClient(h, "https://ssm.eu-west-1.amazonaws.com", "ssm", "AmazonSSM", "SSM", "eu-west-1",
				credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-key", ""))
			sleeping := make(chan struct{}, 1)
			c.sleep = func(ctx context.Context, d time.Duration) error {
				sleeping <- struct{}{}
				return sleep(ctx, time.Hour) // the real wait, long enough to be sure
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := ssmClient{c}.GetParameter(ctx, &getParameterInput{Name: "/x"})
				done <- err
			}()
			<-h.arrived
			if tt.backoff {
				<-sleeping
			}
			cancel()
			err := <-done
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%v: want context.Canceled", err)
			}
			if h.n != tt.requests {
				t.Errorf("%d requests, want %d", h.n, tt.requests)
			}
			if !tt.backoff && len(sleeping) != 0 {
				t.Error("backed off after a cancelled request")
			}
			cerr := fakeSource(nil, nil, config.AWS{}).classify("aws-ssm: get parameter \"/x\"", "ssm:GetParameter", err, nil)
			if strings.Contains(cerr.Error(), "cannot reach AWS") {
				t.Errorf("classified %v", cerr)
			}
		})
	}
}

func TestUnquote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`"plain"`, "plain", true},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t", true},
		{`"\u00e9\u20AC"`, "é€", true},
		{`"\ud83d\ude00"`, "😀", true},
		{`"\ud83d"`, "\uFFFD", true},
		{`"\x"`, "", false},
		{`"\u12"`, "", false},
		{`"abc`, "", false},
	}
	for _, tt := range tests {
		got, ok := unquote([]byte(tt.in))
		if ok != tt.ok || ok && string(got) != tt.want {
			t.Errorf("unquote(%s) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	// A malformed value must not be quoted back in the error.
	var v secretText
	if err := v.UnmarshalJSON([]byte(`"s3cr3t\q"`)); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %v", err)
	}
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		region  string
		env     []string
		sm, ssm string
	}{
		{"commercial", "eu-west-1", nil, "https://secretsmanager.eu-west-1.amazonaws.com/", "https://ssm.eu-west-1.amazonaws.com/"},
		{"china", "cn-north-1", nil, "https://secretsmanager.cn-north-1.amazonaws.com.cn/", "https://ssm.cn-north-1.amazonaws.com.cn/"},
		{"shared override", "us-east-1", []string{"AWS_ENDPOINT_URL", "http://127.0.0.1:5000"}, "http://127.0.0.1:5000/", "http://127.0.0.1:5000/"},
		{"service overrides", "us-east-1", []string{"AWS_ENDPOINT_URL", "http://shared", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "https://sm.vpce.example/", "AWS_ENDPOINT_URL_SSM", "https://ssm.vpce.example"},
			"https://sm.vpce.example/", "https://ssm.vpce.example/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(context.Background(), config.AWS{Region: tt.region}, Options{Env: envMap(tt.env...)})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.sm.(smClient).c.url; got != tt.sm {
				t.Errorf("Secrets Manager endpoint %q, want %q", got, tt.sm)
			}
			if got := s.ssm.(ssmClient).c.url; got != tt.ssm {
				t.Errorf("SSM endpoint %q, want %q", got, tt.ssm)
			}
		})
	}
}
