package aws

import (
	"context"
	"errors"
	"fmt"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/time/rate"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws/internal/awsjson"
)

// fakeSM and fakeSSM are function-field fakes of the API clients.
type fakeSM struct {
	get   func(*awsjson.GetSecretValueInput) (*awsjson.GetSecretValueOutput, error)
	batch func(*awsjson.BatchGetSecretValueInput) (*awsjson.BatchGetSecretValueOutput, error)
}

func (f *fakeSM) GetSecretValue(_ context.Context, in *awsjson.GetSecretValueInput) (*awsjson.GetSecretValueOutput, error) {
	return f.get(in)
}

func (f *fakeSM) BatchGetSecretValue(_ context.Context, in *awsjson.BatchGetSecretValueInput) (*awsjson.BatchGetSecretValueOutput, error) {
	return f.batch(in)
}

type fakeSSM struct {
	get    func(*awsjson.GetParameterInput) (*awsjson.GetParameterOutput, error)
	gets   func(*awsjson.GetParametersInput) (*awsjson.GetParametersOutput, error)
	byPath func(*awsjson.GetParametersByPathInput) (*awsjson.GetParametersByPathOutput, error)
}

func (f *fakeSSM) GetParameter(_ context.Context, in *awsjson.GetParameterInput) (*awsjson.GetParameterOutput, error) {
	return f.get(in)
}

func (f *fakeSSM) GetParameters(_ context.Context, in *awsjson.GetParametersInput) (*awsjson.GetParametersOutput, error) {
	return f.gets(in)
}

func (f *fakeSSM) GetParametersByPath(_ context.Context, in *awsjson.GetParametersByPathInput) (*awsjson.GetParametersByPathOutput, error) {
	return f.byPath(in)
}

// text is a decoded JSON string.
func text(s string) *awsjson.SecretText {
	t := awsjson.SecretText(s)
	return &t
}

func fakeSource(sm smAPI, p ssmAPI, cfg Config) *Source {
	s := &Source{
		log:    slog.New(slog.DiscardHandler),
		cfg:    cfg,
		region: testRegion,
		creds:  aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKIAFAKE", "fake", "")),
		sm:     sm,
		ssm:    p,
	}
	s.smView = &secretsManager{s: s}
	s.ssmView = &parameterStore{s: s}
	return s
}

func TestClassify(t *testing.T) {
	t.Parallel()
	s := fakeSource(nil, nil, Config{AssumeRole: &AssumeRole{RoleARN: roleARN}})
	api := func(code, msg string) error { return &smithy.GenericAPIError{Code: code, Message: msg} }
	respWith := func(status int, h http.Header, err error) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: h}}, Err: err}}
	}
	resp := func(status int) error { return respWith(status, http.Header{}, errors.New("deserialization failed")) }
	retryAfter := http.Header{"Retry-After": {"7"}}
	tests := []struct {
		name  string
		err   error
		want  error
		text  []string
		after time.Duration // the RetryAfterError's wait, if any
	}{
		{"access denied", api("AccessDeniedException", "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: secretsmanager:GetSecretValue"),
			sources.ErrPermission, []string{"access denied", roleARN, "secretsmanager:GetSecretValue", "assumed-role/r/s"}, 0},
		{"kms", api("DecryptionFailure", "kms"), sources.ErrPermission, nil, 0},
		{"not found", api("ResourceNotFoundException", "Secrets Manager can't find the specified secret."), sources.ErrNotFound, []string{"not found"}, 0},
		{"parameter not found", api("ParameterNotFound", ""), sources.ErrNotFound, nil, 0},
		{"version not found", api("ParameterVersionNotFound", ""), sources.ErrNotFound, nil, 0},
		{"throttling", api("ThrottlingException", "Rate exceeded"), sources.ErrThrottled, []string{"throttled by AWS (ThrottlingException)"}, 0},
		{"STS throttling", api("Throttling", "Rate exceeded"), sources.ErrThrottled, nil, 0},
		{"SDK throttle code", api("RequestThrottledException", ""), sources.ErrThrottled, nil, 0},
		{"429 with an unknown code", respWith(429, http.Header{}, api("SlowDownPlease", "")), sources.ErrThrottled, nil, 0},
		{"429 with Retry-After", respWith(429, retryAfter, api("ThrottlingException", "")), sources.ErrThrottled, []string{"Retry-After 7s"}, 7 * time.Second},
		{"503 with Retry-After", respWith(503, retryAfter, errors.New("html")), sources.ErrUnavailable, []string{"HTTP 503"}, 7 * time.Second},
		{"5xx with an unknown code", respWith(502, http.Header{}, api("BadGatewayish", "")), sources.ErrUnavailable, nil, 0},
		{"Retry-After on a 404 is not a wait", respWith(404, retryAfter, api("ResourceNotFoundException", "")), sources.ErrNotFound, nil, 0},
		{"expired token", api("ExpiredTokenException", ""), sources.ErrAuth, nil, 0},
		{"bad key", api("UnrecognizedClientException", ""), sources.ErrAuth, nil, 0},
		{"invalid signature", api("InvalidSignatureException", "Signature expired: 20300102T030405Z is now earlier than 20300102T031000Z"),
			sources.ErrAuth, []string{"InvalidSignatureException", "Signature expired", "check the host clock (NTP"}, 0},
		{"signature does not match", api("SignatureDoesNotMatch", ""), sources.ErrAuth, []string{"check the host clock (NTP"}, 0},
		{"time too skewed", api("RequestTimeTooSkewed", ""), sources.ErrAuth, []string{"check the host clock (NTP"}, 0},
		{"request expired", api("RequestExpired", ""), sources.ErrAuth, []string{"check the host clock (NTP"}, 0},
		{"internal", api("InternalServiceError", ""), sources.ErrUnavailable, nil, 0},
		{"request timeout", api("RequestTimeoutException", ""), sources.ErrUnavailable, nil, 0},
		{"undecodable 403", resp(403), sources.ErrPermission, []string{"HTTP 403"}, 0},
		{"undecodable 503", resp(503), sources.ErrUnavailable, nil, 0},
		{"send", &smithyhttp.RequestSendError{Err: syscall.ECONNREFUSED}, sources.ErrUnavailable, []string{"cannot reach AWS"}, 0},
		{"quota", &ratelimit.QuotaExceededError{}, sources.ErrThrottled, nil, 0},
		{"deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), context.DeadlineExceeded, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := s.classify(`aws-sm: get secret "prod/db"`, "secretsmanager:GetSecretValue", tt.err, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("%v: does not wrap %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), `aws-sm: get secret "prod/db"`) {
				t.Errorf("%q does not name the secret", err)
			}
			for _, w := range tt.text {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("the SDK error is not kept for errors.As")
			}
			if got := sources.RetryAfter(err); got != tt.after {
				t.Errorf("Retry-After %v, want %v", got, tt.after)
			}
		})
	}
}

func TestSecretsManagerFetchSelectsVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref, stage, versionID string
	}{
		{"aws-sm://prod/db#password", "AWSCURRENT", ""},
		{"aws-sm://prod/db?stage=AWSPREVIOUS", "AWSPREVIOUS", ""},
		{"aws-sm://arn:aws:secretsmanager:eu-west-1:1:secret:prod/db-AbCdEf?version_id=v-1", "", "v-1"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			t.Parallel()
			ref := testenv.Ref(t, tt.ref)
			var got *awsjson.GetSecretValueInput
			sm := &fakeSM{get: func(in *awsjson.GetSecretValueInput) (*awsjson.GetSecretValueOutput, error) {
				got = in
				return &awsjson.GetSecretValueOutput{SecretString: text(`{"password":"p"}`), VersionId: "v-9"}, nil
			}}
			o, err := fakeSource(sm, nil, Config{}).SecretsManager().Fetch(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			if got.SecretId != ref.Path || got.VersionStage != tt.stage || got.VersionId != tt.versionID {
				t.Errorf("sent id %q stage %q version %q", got.SecretId, got.VersionStage, got.VersionId)
			}
			if o.Version != "v-9" {
				t.Errorf("version %q", o.Version)
			}
		})
	}
}

func TestSecretsManagerFetchBatch(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var batchSizes []int
	var singles []string
	sm := &fakeSM{
		get: func(in *awsjson.GetSecretValueInput) (*awsjson.GetSecretValueOutput, error) {
			mu.Lock()
			singles = append(singles, in.SecretId+"@"+in.VersionStage)
			mu.Unlock()
			return &awsjson.GetSecretValueOutput{SecretString: text("single"), VersionId: "vs"}, nil
		},
		batch: func(in *awsjson.BatchGetSecretValueInput) (*awsjson.BatchGetSecretValueOutput, error) {
			mu.Lock()
			batchSizes = append(batchSizes, len(in.SecretIdList))
			mu.Unlock()
			out := &awsjson.BatchGetSecretValueOutput{}
			ids := in.SecretIdList
			// Page the first call: half now, half after NextToken.
			if in.NextToken == "" && len(ids) == smBatchMax {
				out.NextToken = "page-2"
				ids = ids[:10]
			} else if in.NextToken != "" {
				ids = ids[10:]
			}
			for _, id := range ids {
				switch {
				case id == "s-missing":
					out.Errors = append(out.Errors, awsjson.APIErrorType{SecretId: id, ErrorCode: "ResourceNotFoundException", Message: "can't find"})
				case id == "s-unanswered":
				default:
					out.SecretValues = append(out.SecretValues, awsjson.SecretValueEntry{
						Name: id, ARN: "arn:" + id, SecretString: text("v:" + id), VersionId: "ver-" + id})
				}
			}
			return out, nil
		},
	}
	var refs []sources.Ref
	for i := range 43 {
		refs = append(refs, testenv.Ref(t, fmt.Sprintf("aws-sm://s-%02d#k", i)))
	}
	refs = append(refs,
		testenv.Ref(t, "aws-sm://s-00#other"), // same object, another key: no extra id
		testenv.Ref(t, "aws-sm://s-missing"),
		testenv.Ref(t, "aws-sm://s-unanswered"),
		testenv.Ref(t, "aws-sm://s-01?stage=AWSPREVIOUS"), // not batchable
	)
	res := fakeSource(sm, nil, Config{}).SecretsManager().(sources.Batcher).FetchBatch(context.Background(), refs)
	if len(res) != len(refs) {
		t.Fatalf("%d results for %d refs", len(res), len(refs))
	}
	for i := range 43 {
		id := fmt.Sprintf("s-%02d", i)
		if res[i].Err != nil || string(res[i].Object.Value.Reveal()) != "v:"+id || res[i].Object.Version != "ver-"+id {
			t.Errorf("%s: %v %q %q", id, res[i].Err, res[i].Object.Value.Reveal(), res[i].Object.Version)
		}
	}
	if string(res[43].Object.Value.Reveal()) != "v:s-00" {
		t.Errorf("duplicate object not shared")
	}
	if !errors.Is(res[44].Err, sources.ErrNotFound) || !strings.Contains(res[44].Err.Error(), `"s-missing"`) {
		t.Errorf("missing: %v", res[44].Err)
	}
	if res[45].Err != nil || string(res[45].Object.Value.Reveal()) != "single" {
		t.Errorf("unanswered id not read alone: %+v", res[45])
	}
	// 45 distinct ids: 20 (two pages), 20 (two pages), 5.
	if want := []int{20, 20, 20, 20, 5}; fmt.Sprint(batchSizes) != fmt.Sprint(want) {
		t.Errorf("batch calls %v, want %v", batchSizes, want)
	}
	if want := []string{"s-unanswered@AWSCURRENT", "s-01@AWSPREVIOUS"}; fmt.Sprint(singles) != fmt.Sprint(want) {
		t.Errorf("single reads %v, want %v", singles, want)
	}
}

func TestSecretsManagerBatchDeniedFallsBack(t *testing.T) {
	t.Parallel()
	var batches, singles int
	sm := &fakeSM{
		batch: func(*awsjson.BatchGetSecretValueInput) (*awsjson.BatchGetSecretValueOutput, error) {
			batches++
			return nil, &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized to perform: secretsmanager:BatchGetSecretValue"}
		},
		get: func(in *awsjson.GetSecretValueInput) (*awsjson.GetSecretValueOutput, error) {
			singles++
			return &awsjson.GetSecretValueOutput{SecretString: text("x"), VersionId: "v"}, nil
		},
	}
	src := fakeSource(sm, nil, Config{}).SecretsManager().(sources.Batcher)
	refs := []sources.Ref{testenv.Ref(t, "aws-sm://a"), testenv.Ref(t, "aws-sm://b")}
	for range 2 {
		for _, r := range src.FetchBatch(context.Background(), refs) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	if batches != 1 || singles != 4 {
		t.Errorf("%d batch and %d single calls, want 1 (then batching off) and 4", batches, singles)
	}
}

func TestSSMFetchBatch(t *testing.T) {
	t.Parallel()
	var calls [][]string
	p := &fakeSSM{gets: func(in *awsjson.GetParametersInput) (*awsjson.GetParametersOutput, error) {
		calls = append(calls, in.Names)
		if !in.WithDecryption {
			t.Error("GetParameters without decryption")
		}
		out := &awsjson.GetParametersOutput{}
		for _, n := range in.Names {
			name, sel, _ := strings.Cut(n, ":")
			if name == "/missing" {
				out.InvalidParameters = append(out.InvalidParameters, n)
				continue
			}
			prm := awsjson.Parameter{Name: name, Value: awsjson.SecretText("v" + name), Version: 3}
			if sel != "" {
				prm.Selector = ":" + sel
			}
			out.Parameters = append(out.Parameters, prm)
		}
		return out, nil
	}}
	var refs []sources.Ref
	for i := range 23 {
		refs = append(refs, testenv.Ref(t, fmt.Sprintf("aws-ssm:///p/%02d", i)))
	}
	refs = append(refs, testenv.Ref(t, "aws-ssm:///p/00?version=2"), testenv.Ref(t, "aws-ssm:///p/01?label=prod"), testenv.Ref(t, "aws-ssm:///missing"))
	res := fakeSource(nil, p, Config{}).SSM().(sources.Batcher).FetchBatch(context.Background(), refs)
	for i := range 25 {
		if res[i].Err != nil || res[i].Object.Version != "3" {
			t.Errorf("ref %s: %v %q", refs[i], res[i].Err, res[i].Object.Version)
		}
	}
	if !errors.Is(res[25].Err, sources.ErrNotFound) {
		t.Errorf("missing: %v", res[25].Err)
	}
	if len(calls) != 3 || len(calls[0]) != 10 || len(calls[2]) != 6 {
		t.Errorf("calls %v, want 10+10+6 names", calls)
	}
	if got := calls[2][3]; got != "/p/00:2" {
		t.Errorf("selector sent as %q, want /p/00:2", got)
	}
}

func TestSSMByPath(t *testing.T) {
	t.Parallel()
	params := map[string]string{"/app/db/password": "a", "/app/db/user": "b", "/app/token": "c"}
	tests := []struct {
		name   string
		params map[string]string
		fields []string
		err    error
	}{
		{"nested", params, []string{"db_password", "db_user", "token"}, nil},
		{"collision", map[string]string{"/app/a/b": "x", "/app/a_b": "y"}, nil, nil},
		{"empty", map[string]string{}, nil, sources.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var names []string
			for n := range tt.params {
				names = append(names, n)
			}
			pages := 0
			p := &fakeSSM{byPath: func(in *awsjson.GetParametersByPathInput) (*awsjson.GetParametersByPathOutput, error) {
				if in.Path != "/app" || !in.Recursive || !in.WithDecryption {
					t.Errorf("sent path %q recursive %v decrypt %v", in.Path, in.Recursive, in.WithDecryption)
				}
				// One parameter per page.
				out := &awsjson.GetParametersByPathOutput{}
				if pages < len(names) {
					n := names[pages]
					out.Parameters = []awsjson.Parameter{{Name: n, Value: awsjson.SecretText(tt.params[n]), Version: 1}}
				}
				pages++
				if pages < len(names) {
					out.NextToken = "more"
				}
				return out, nil
			}}
			o, err := fakeSource(nil, p, Config{}).SSM().Fetch(context.Background(), testenv.Ref(t, "aws-ssm:///app/?recursive=true"))
			switch {
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("%v, want %v", err, tt.err)
				}
			case tt.fields == nil:
				if err == nil || !strings.Contains(err.Error(), "both map to field") {
					t.Fatalf("%v, want a collision error", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(o.Keys()) != fmt.Sprint(tt.fields) || !o.Expands() {
					t.Errorf("fields %v expands %v, want %v", o.Keys(), o.Expands(), tt.fields)
				}
			}
		})
	}
}

func TestFieldName(t *testing.T) {
	t.Parallel()
	tests := []struct{ path, name, want string }{
		{"/phase/", "/phase/db/password", "db_password"},
		{"/phase", "/phase/token", "token"},
		{"/", "/a/b", "a_b"},
	}
	for _, tt := range tests {
		if got := FieldName(tt.path, tt.name); got != tt.want {
			t.Errorf("FieldName(%q, %q) = %q, want %q", tt.path, tt.name, got, tt.want)
		}
	}
}

// TestThrottleGate: a throttled Secrets Manager read holds later Secrets
// Manager reads back (not SSM's: AWS throttles them apart) until the
// back-off ends or the caller gives up; the back-off grows within its
// bounds, takes a Retry-After as its floor, and the next answer resets it.
func TestThrottleGate(t *testing.T) {
	t.Parallel()
	smCalls := 0
	sm := &fakeSM{get: func(*awsjson.GetSecretValueInput) (*awsjson.GetSecretValueOutput, error) {
		smCalls++
		return nil, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	}}
	ssmCalls := 0
	p := &fakeSSM{get: func(*awsjson.GetParameterInput) (*awsjson.GetParameterOutput, error) {
		ssmCalls++
		return &awsjson.GetParameterOutput{Parameter: &awsjson.Parameter{Name: "/x", Value: awsjson.SecretText("v"), Version: 1}}, nil
	}}
	s := fakeSource(sm, p, Config{})
	_, err := s.SecretsManager().Fetch(context.Background(), testenv.Ref(t, "aws-sm://a"))
	if !errors.Is(err, sources.ErrThrottled) || !sources.SourceLevel(err) {
		t.Fatalf("%v, want a source-level ErrThrottled", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.SecretsManager().Fetch(ctx, testenv.Ref(t, "aws-sm://a"))
	if !errors.Is(err, sources.ErrThrottled) || smCalls != 1 {
		t.Fatalf("during the back-off: %v after %d calls, want ErrThrottled after 1", err, smCalls)
	}
	if _, err := s.SSM().Fetch(context.Background(), testenv.Ref(t, "aws-ssm:///x")); err != nil || ssmCalls != 1 {
		t.Fatalf("SSM after a Secrets Manager throttle: %v after %d calls", err, ssmCalls)
	}

	var g throttleGate
	now := time.Now()
	throttled := &awsError{msg: "throttled", sentinel: sources.ErrThrottled, err: errors.New("x")}
	for i := range 10 {
		d := g.observe(throttled, now)
		hi := min(time.Second<<i, time.Minute)
		if d < hi/2 || d > hi {
			t.Errorf("strike %d: back-off %v outside [%v, %v]", i, d, hi/2, hi)
		}
	}
	if d := g.observe(&sources.RetryAfterError{Err: throttled, After: 3 * time.Minute}, now); d != 3*time.Minute {
		t.Errorf("Retry-After 3m: back-off %v", d)
	}
	g.observe(&awsError{msg: "unavailable", sentinel: sources.ErrUnavailable, err: errors.New("x")}, now)
	if g.open.IsZero() {
		t.Error("a 5xx reset the gate")
	}
	g.observe(&awsError{msg: "not found", sentinel: sources.ErrNotFound, err: errors.New("x")}, now)
	if !g.open.IsZero() || g.strike != 0 {
		t.Error("an answer did not reset the gate")
	}
}

// fakeTransport answers IMDS requests by method and path.
type fakeTransport func(*http.Request) (*http.Response, error)

func (f fakeTransport) Do(r *http.Request) (*http.Response, error) { return f(r) }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestIMDSDiag(t *testing.T) {
	t.Parallel()
	status := func(code int) (*http.Response, error) {
		return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader(""))}, nil
	}
	tests := []struct {
		name  string
		token func() (*http.Response, error)
		get   func() (*http.Response, error)
		want  IMDSProblem
	}{
		{"token 403", func() (*http.Response, error) { return status(403) }, nil, IMDSTokenRefused},
		{"token 405", func() (*http.Response, error) { return status(405) }, nil, IMDSTokenRefused},
		{"token timeout", func() (*http.Response, error) { return nil, timeoutErr{} }, nil, IMDSTokenTimeout},
		{"refused", func() (*http.Response, error) { return nil, fmt.Errorf("dial: %w", syscall.ECONNREFUSED) }, nil, IMDSRefused},
		{"no role", func() (*http.Response, error) { return status(200) }, func() (*http.Response, error) { return status(404) }, IMDSNoRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &imdsDiag{next: fakeTransport(func(r *http.Request) (*http.Response, error) {
				if r.Method == http.MethodPut {
					return tt.token()
				}
				return tt.get()
			})}
			put, _ := http.NewRequest(http.MethodPut, "http://169.254.169.254/latest/api/token", nil)
			if _, err := d.Do(put); err == nil && tt.get != nil {
				get, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/latest/meta-data/iam/security-credentials/", nil)
				_, _ = d.Do(get)
			}
			err := d.explain(errors.New("sdk error"))
			var ie *IMDSError
			if !errors.As(err, &ie) || ie.Problem != tt.want {
				t.Fatalf("%v, want problem %d", err, tt.want)
			}
		})
	}
}

func TestIMDSCredentialsCheck(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &imdsCredentials{diag: &imdsDiag{}, now: func() time.Time { return now }}
	tests := []struct {
		name  string
		creds aws.Credentials
		want  IMDSProblem
	}{
		{"ok", aws.Credentials{AccessKeyID: "a", SecretAccessKey: "s", CanExpire: true, Expires: now.Add(time.Hour)}, IMDSUnknown},
		{"expired", aws.Credentials{AccessKeyID: "a", SecretAccessKey: "s", CanExpire: true, Expires: now.Add(-time.Second)}, IMDSExpiredCredentials},
		{"no key", aws.Credentials{SecretAccessKey: "s"}, IMDSBadCredentials},
	}
	for _, tt := range tests {
		_, err := p.check(tt.creds)
		var ie *IMDSError
		switch {
		case tt.want == IMDSUnknown && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != IMDSUnknown && (!errors.As(err, &ie) || ie.Problem != tt.want || !errors.Is(err, sources.ErrAuth)):
			t.Errorf("%s: %v, want problem %d wrapping ErrAuth", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "s\"") {
			t.Errorf("%s: error may carry the secret key: %v", tt.name, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		env  func(string) string
		want string
	}{
		{"imds disabled", Config{}, envMap("AWS_EC2_METADATA_DISABLED", "true"), "AWS_EC2_METADATA_DISABLED"},
		{"missing CA bundle", Config{}, envMap("AWS_CA_BUNDLE", "/nonexistent/ca.pem"), "AWS_CA_BUNDLE"},
	}
	for _, tt := range tests {
		_, err := New(context.Background(), tt.cfg, Options{Env: tt.env})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tt.name, err, tt.want)
		}
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	calls := 0
	p := &fakeSSM{get: func(*awsjson.GetParameterInput) (*awsjson.GetParameterOutput, error) {
		calls++
		return &awsjson.GetParameterOutput{Parameter: &awsjson.Parameter{Name: "/x", Value: awsjson.SecretText("v"), Version: 1}}, nil
	}}
	s := fakeSource(nil, p, Config{RateLimit: 0.001})
	s.limiter = rate.NewLimiter(rate.Limit(0.001), 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.SSM().Fetch(ctx, testenv.Ref(t, "aws-ssm:///x")); err != nil {
		t.Fatal(err)
	}
	// The next token is ~1000s away, beyond the deadline: refused at once.
	_, err := s.SSM().Fetch(ctx, testenv.Ref(t, "aws-ssm:///x"))
	if !errors.Is(err, sources.ErrThrottled) || calls != 1 {
		t.Fatalf("%v after %d calls, want ErrThrottled after 1", err, calls)
	}
}
