package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// fakeMetadata is an IMDSv2 endpoint serving one role's credentials and a
// placement region.
func fakeMetadata(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			fmt.Fprint(w, "token")
		case r.Header.Get("X-Aws-Ec2-Metadata-Token") != "token":
			http.Error(w, "no token", http.StatusUnauthorized)
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			fmt.Fprint(w, "phase-node")
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/phase-node":
			fmt.Fprintf(w, `{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"AKIANODE","SecretAccessKey":"s","Token":"t","Expiration":%q}`,
				time.Now().Add(6*time.Hour).UTC().Format(time.RFC3339))
		case r.URL.Path == "/latest/dynamic/instance-identity/document":
			fmt.Fprint(w, `{"region":"us-east-1"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// fault is how a failing AWS endpoint answers.
type fault struct {
	name      string
	handle    func(w http.ResponseWriter, r *http.Request) // nil: nothing listens
	throttled bool
	after     time.Duration // the Retry-After the error must carry
}

var faults = []fault{
	{name: "connection refused"},
	{name: "connection reset", handle: func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}},
	{name: "timeout", handle: func(w http.ResponseWriter, r *http.Request) {
		// Until the client gives up; a credential refresh does so only at
		// RequestTimeout (the SDK's cache detaches it from the fetch), so
		// the server gives up first, to end the test sooner.
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}},
	{name: "503 page", handle: func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>Service Unavailable</html>", http.StatusServiceUnavailable)
	}},
	{name: "500 InternalFailure", handle: func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"__type":"InternalFailure","message":"internal"}`)
	}},
	{name: "throttling", throttled: true, handle: func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") == "" && r.Method == http.MethodPost { // STS: query protocol, XML
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>`)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
	}},
	{name: "429 with Retry-After", throttled: true, after: 7 * time.Second, handle: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"__type":"TooManyRequestsException","message":"slow down"}`)
	}},
}

// failing serves f and counts the requests it gets.
type failing struct {
	url string
	mu  sync.Mutex
	n   int
}

func newFailing(t *testing.T, f fault) *failing {
	t.Helper()
	fs := &failing{}
	if f.handle == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fs.url = "http://" + ln.Addr().String()
		ln.Close()
		return fs
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.n++
		fs.mu.Unlock()
		f.handle(w, r)
	}))
	t.Cleanup(srv.Close)
	fs.url = srv.URL
	return fs
}

func (fs *failing) requests() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.n
}

// TestOutagesAreSourceLevel: whatever way Secrets Manager, SSM, STS or IMDS
// fails — refused, reset, hanging, 5xx, throttling — Fetch and FetchBatch
// return at once with an error the engine's circuit breaker counts against
// the source (ErrUnavailable, ErrThrottled or a timeout), carrying a
// Retry-After when AWS sent one, after exactly one request to the failing
// endpoint: no retry loop multiplies the load on a failing service.
func TestOutagesAreSourceLevel(t *testing.T) {
	t.Parallel()
	md := fakeMetadata(t)
	type call struct {
		name string
		run  func(ctx context.Context, s *Source) []error
	}
	one := func(src func(*Source) sources.Source, ref string) func(context.Context, *Source) []error {
		return func(ctx context.Context, s *Source) []error {
			_, err := src(s).Fetch(ctx, testenv.Ref(t, ref))
			return []error{err}
		}
	}
	batch := func(src func(*Source) sources.Source, refs ...string) func(context.Context, *Source) []error {
		return func(ctx context.Context, s *Source) []error {
			var rs []sources.Ref
			for _, r := range refs {
				rs = append(rs, testenv.Ref(t, r))
			}
			var errs []error
			for _, res := range src(s).(sources.Batcher).FetchBatch(ctx, rs) {
				errs = append(errs, res.Err)
			}
			return errs
		}
	}
	sm, ps := (*Source).SecretsManager, (*Source).SSM
	calls := []call{
		{"GetSecretValue", one(sm, "aws-sm://prod/db#password")},
		{"BatchGetSecretValue", batch(sm, "aws-sm://prod/a", "aws-sm://prod/b")},
		{"GetParameter", one(ps, "aws-ssm:///phase/a")},
		{"GetParameters", batch(ps, "aws-ssm:///phase/a", "aws-ssm:///phase/b")},
		{"GetParametersByPath", one(ps, "aws-ssm:///phase/?recursive=true")},
	}
	for _, service := range []string{"api", "sts", "imds"} {
		for _, f := range faults {
			for _, c := range calls {
				if service != "api" && c.name != "GetSecretValue" && c.name != "GetParameters" {
					continue // credentials fail the same way for every call
				}
				t.Run(service+"/"+f.name+"/"+c.name, func(t *testing.T) {
					t.Parallel()
					bad := newFailing(t, f)
					cfg := Config{Region: "us-east-1"}
					env := []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT", md, "AWS_ENDPOINT_URL", bad.url}
					switch service {
					case "sts":
						healthy := newFailing(t, fault{name: "unused", handle: func(w http.ResponseWriter, r *http.Request) {
							t.Errorf("%s reached with failing credentials", r.Header.Get("X-Amz-Target"))
						}})
						cfg.AssumeRole = &AssumeRole{RoleARN: roleARN}
						env = []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT", md, "AWS_ENDPOINT_URL", healthy.url, "AWS_ENDPOINT_URL_STS", bad.url}
					case "imds":
						env = []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT", bad.url, "AWS_ENDPOINT_URL", "http://127.0.0.1:1"}
					}
					s, err := New(context.Background(), cfg, Options{Env: envMap(env...)})
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
					defer cancel()
					start := time.Now()
					errs := c.run(ctx, s)
					if d := time.Since(start); d > 5*time.Second {
						t.Errorf("took %v", d)
					}
					t.Logf("%v", errs[0])
					for i, err := range errs {
						switch {
						case err == nil:
							t.Errorf("result %d: no error", i)
						case !sources.SourceLevel(err):
							t.Errorf("result %d: %v (reason %s) is not source-level", i, err, sources.Reason(err))
						case f.throttled && service != "imds" && !errors.Is(err, sources.ErrThrottled):
							t.Errorf("result %d: %v, want ErrThrottled", i, err)
						case f.name != "timeout" && !f.throttled && !errors.Is(err, sources.ErrUnavailable):
							t.Errorf("result %d: %v, want ErrUnavailable", i, err)
						case service != "imds" && sources.RetryAfter(err) != f.after:
							t.Errorf("result %d: Retry-After %v, want %v: %v", i, sources.RetryAfter(err), f.after, err)
						}
						if err != nil && strings.Contains(err.Error(), "node-secret") {
							t.Errorf("error carries a key: %v", err)
						}
					}
					if f.handle != nil && bad.requests() != 1 {
						t.Errorf("%d requests to the failing endpoint, want 1", bad.requests())
					}
				})
			}
		}
	}
}
