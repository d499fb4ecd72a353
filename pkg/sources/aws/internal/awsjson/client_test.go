package awsjson

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
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

var fixedTime = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func testSSM(h aws.HTTPClient) SSM {
	return NewSSM(Config{
		HTTPClient: h, Endpoint: "https://ssm.eu-west-1.amazonaws.com", Region: "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-key", "session-token"),
		Now:         func() time.Time { return fixedTime },
	})
}

func TestSignsRequest(t *testing.T) {
	t.Parallel()
	h := &scripted{answers: []answer{{status: 200, body: `{"Parameter":{"Name":"/x","Value":"v\"\\\n\u00e9\ud83d\ude00","Version":7}}`}}}
	out, err := testSSM(h).GetParameter(context.Background(), &GetParameterInput{Name: "/x", WithDecryption: true})
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

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer answer
		code   string // "" when no API error is expected
		msg    string
	}{
		{"namespaced type", answer{status: 400, body: `{"__type":"com.amazonaws.secretsmanager#ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`},
			"ResourceNotFoundException", "Secrets Manager can't find the specified secret."},
		{"plain type, capital Message", answer{status: 400, body: `{"__type":"ParameterNotFound","Message":"no such parameter"}`}, "ParameterNotFound", "no such parameter"},
		{"header code", answer{status: 400, header: http.Header{"X-Amzn-Errortype": {"AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/"}}, body: `{"message":"not authorized"}`},
			"AccessDeniedException", "not authorized"},
		{"proxy 403 page", answer{status: 403, body: `<html>Forbidden</html>`}, "", ""}, // a DeserializationError
		{"code without a message", answer{status: 400, body: `{"code":"ValidationException"}`}, "ValidationException", "UnknownError"},
		{"no code", answer{status: 502, body: ``}, "UnknownError", "UnknownError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &scripted{answers: []answer{tt.answer}}
			_, err := testSSM(h).GetParameter(context.Background(), &GetParameterInput{Name: "/x"})
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
			var oe *smithy.OperationError
			if !errors.As(err, &oe) || oe.Service() != "SSM" || oe.Operation() != "GetParameter" {
				t.Errorf("%v: want an OperationError naming SSM GetParameter", err)
			}
		})
	}
}

// TestOneRequestPerCall: throttling, 5xx, refused connections and
// timeouts come back at once, after one request: retrying is the caller's
// (the engine's breaker and backoff).
func TestOneRequestPerCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer answer
	}{
		{"throttled", answer{status: 400, body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`}},
		{"503", answer{status: 503, body: `<html>Service Unavailable</html>`}},
		{"500", answer{status: 500, body: `{"__type":"InternalFailure"}`}},
		{"refused", answer{err: syscall.ECONNREFUSED}},
		{"reset", answer{err: syscall.ECONNRESET}},
		{"timeout", answer{err: &url.Error{Op: "Post", URL: "https://ssm", Err: timeoutErr{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &scripted{answers: []answer{tt.answer, {status: 200, body: `{}`}}}
			_, err := testSSM(h).GetParameter(context.Background(), &GetParameterInput{Name: "/x"})
			if err == nil || len(h.reqs) != 1 {
				t.Errorf("%v after %d requests, want an error after 1", err, len(h.reqs))
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// keepAliveServer answers HTTP/1.1 on a raw listener: on each connection
// it answers the first request and drops the connection on the second
// without answering, as AWS's front ends do to idle kept-alive connections
// (closing it under a request in flight). A connection whose first request
// is to be dropped too is opened when dropFirst.
type keepAliveServer struct {
	ln        net.Listener
	mu        sync.Mutex
	requests  int
	dropFirst bool
}

func newKeepAliveServer(t *testing.T, dropFirst bool) *keepAliveServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &keepAliveServer{ln: ln, dropFirst: dropFirst}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *keepAliveServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for n := 1; ; n++ {
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		s.mu.Lock()
		s.requests++
		s.mu.Unlock()
		if n > 1 || s.dropFirst {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, not a clean close
			}
			return
		}
		body := `{"Parameter":{"Name":"/x","Value":"v","Version":1}}`
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n\r\n"+body)
	}
}

func (s *keepAliveServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// TestDeadKeptAliveConnection: a request that dies on a reused connection
// is sent once more on a new one; one that dies on a new connection is not.
func TestDeadKeptAliveConnection(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		dropFirst bool
		requests  int // the server saw, for the second call
		ok        bool
	}{
		{"reused connection dropped: sent again", false, 2, true},
		{"new connection dropped: not sent again", true, 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newKeepAliveServer(t, tt.dropFirst)
			c := NewSSM(Config{Endpoint: "http://" + srv.ln.Addr().String(), Region: "eu-west-1",
				Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-key", "")})
			ctx := context.Background()
			_, err := c.GetParameter(ctx, &GetParameterInput{Name: "/x"})
			if tt.dropFirst != (err != nil) {
				t.Fatalf("first call: %v", err)
			}
			before := srv.count()
			_, err = c.GetParameter(ctx, &GetParameterInput{Name: "/x"})
			if got := srv.count() - before; got != tt.requests || (err == nil) != tt.ok {
				t.Errorf("second call: %v after %d requests, want ok=%v after %d", err, got, tt.ok, tt.requests)
			}
			var se *smithyhttp.RequestSendError
			if !tt.ok && !errors.As(err, &se) {
				t.Errorf("%v: want a RequestSendError", err)
			}
		})
	}
}

// TestOversizedResponse: an answer over the size limit is a
// deserialization error, not "cannot reach AWS".
func TestOversizedResponse(t *testing.T) {
	t.Parallel()
	h := &scripted{answers: []answer{{status: 200, body: strings.Repeat(" ", maxBody+1)}}}
	_, err := testSSM(h).GetParameter(context.Background(), &GetParameterInput{Name: "/x"})
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
	if len(h.reqs) != 1 {
		t.Errorf("%d requests, want 1", len(h.reqs))
	}
}

// blocking is an HTTP client that blocks each request until its context
// ends, as a transport does.
type blocking struct{ arrived chan struct{} }

func (b *blocking) Do(r *http.Request) (*http.Response, error) {
	b.arrived <- struct{}{}
	<-r.Context().Done()
	return nil, &url.Error{Op: "Post", URL: r.URL.String(), Err: r.Context().Err()}
}

// TestCancellation: cancelling mid-request returns promptly with
// context.Canceled as a smithy.CanceledError, not as unreachable.
func TestCancellation(t *testing.T) {
	t.Parallel()
	h := &blocking{arrived: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := testSSM(h).GetParameter(ctx, &GetParameterInput{Name: "/x"})
		done <- err
	}()
	<-h.arrived
	cancel()
	err := <-done
	var ce *smithy.CanceledError
	var se *smithyhttp.RequestSendError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &ce) || errors.As(err, &se) {
		t.Errorf("%v: want a CanceledError for context.Canceled", err)
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
	var v SecretText
	if err := v.UnmarshalJSON([]byte(`"s3cr3t\q"`)); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %v", err)
	}
}

// TestEndpointErrorRedacted: a configured endpoint that does not parse is
// named in the error without its userinfo or query values, which may be
// credentials (the error is logged and shown in /v1/status at every fetch).
func TestEndpointErrorRedacted(t *testing.T) {
	t.Parallel()
	for _, endpoint := range []string{
		"https://proxyuser:s3cr3t-canary@proxy.example:bad/",
		"https://proxy.example:bad/?token=s3cr3t-canary",
	} {
		c := NewSSM(Config{Endpoint: endpoint, Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")})
		_, err := c.GetParameter(context.Background(), &GetParameterInput{Name: "/x"})
		if err == nil {
			t.Fatalf("%s: no error", endpoint)
		}
		if msg := err.Error(); strings.Contains(msg, "s3cr3t-canary") || !strings.Contains(msg, "proxy.example:bad") || !strings.Contains(msg, "invalid port") {
			t.Errorf("%s: %v, want the endpoint named and why, without the credential", endpoint, err)
		}
	}
}
