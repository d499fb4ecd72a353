package awsjson

// Differential tests: this client against the SDK's generated Secrets
// Manager and SSM clients (test-only dependencies), on the same inputs.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// capture is an HTTP client that keeps the request and answers with a
// canned response.
type capture struct {
	req  *http.Request
	body []byte
	resp func(*http.Request) *http.Response
}

func (c *capture) Do(r *http.Request) (*http.Response, error) {
	c.req = r
	if r.Body != nil {
		c.body, _ = io.ReadAll(r.Body)
	}
	if c.resp != nil {
		return c.resp(r), nil
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("{}")), ContentLength: 2, Request: r}, nil
}

var testCreds = credentials.NewStaticCredentialsProvider("AKIDTEST", "secret-key", "session-token")

// sdkTelemetry removes what the SDK's clients add for its own bookkeeping
// (User-Agent, amz-sdk-invocation-id, amz-sdk-request): they carry no
// protocol, but they are signed, so with them no signature could match.
func sdkTelemetry(stack *middleware.Stack) error {
	for _, id := range []string{"UserAgent", "ClientRequestID"} {
		if _, err := stack.Build.Remove(id); err != nil {
			return err
		}
	}
	// amz-sdk-request comes from the retry middleware itself.
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("DropRetryHeader",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok {
				req.Header.Del("Amz-Sdk-Request")
			}
			return next.HandleFinalize(ctx, in)
		}), "Signing", middleware.Before)
}

func sdkConfig(h aws.HTTPClient, endpoint string) aws.Config {
	return aws.Config{
		Region: "eu-west-1", Credentials: testCreds, HTTPClient: h, BaseEndpoint: aws.String(endpoint),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} }, APIOptions: []func(*middleware.Stack) error{sdkTelemetry},
	}
}

// wire is a request as sent: method, URL, headers and body.
func wire(r *http.Request, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL)
	var keys []string
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(r.Header[k], ", "))
	}
	fmt.Fprintf(&b, "Content-Length: %d\n\n%s", r.ContentLength, body)
	return b.String()
}

// TestSameSignedRequest: for each of the five operations, with the inputs
// the source sends, this client's request is the SDK's byte for byte:
// method, URL, headers, body and so the SigV4 signature.
func TestSameSignedRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const smURL, ssmURL = "https://secretsmanager.eu-west-1.amazonaws.com", "https://ssm.eu-west-1.amazonaws.com"
	tests := []struct {
		name string
		sdk  func(h *capture) error
		ours func(h *capture, now func() time.Time) error
	}{
		{"GetSecretValue AWSCURRENT",
			func(h *capture) error {
				_, err := secretsmanager.NewFromConfig(sdkConfig(h, smURL)).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
					SecretId: aws.String("prod/phase/db"), VersionStage: aws.String("AWSCURRENT")})
				return err
			},
			func(h *capture, now func() time.Time) error {
				_, err := NewSecretsManager(Config{HTTPClient: h, Endpoint: smURL, Region: "eu-west-1", Credentials: testCreds, Now: now}).
					GetSecretValue(ctx, &GetSecretValueInput{SecretId: "prod/phase/db", VersionStage: "AWSCURRENT"})
				return err
			}},
		{"GetSecretValue version id",
			func(h *capture) error {
				_, err := secretsmanager.NewFromConfig(sdkConfig(h, smURL)).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{
					SecretId: aws.String("arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf"), VersionId: aws.String("v-1")})
				return err
			},
			func(h *capture, now func() time.Time) error {
				_, err := NewSecretsManager(Config{HTTPClient: h, Endpoint: smURL, Region: "eu-west-1", Credentials: testCreds, Now: now}).
					GetSecretValue(ctx, &GetSecretValueInput{SecretId: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf", VersionId: "v-1"})
				return err
			}},
		{"BatchGetSecretValue",
			func(h *capture) error {
				_, err := secretsmanager.NewFromConfig(sdkConfig(h, smURL)).BatchGetSecretValue(ctx, &secretsmanager.BatchGetSecretValueInput{
					SecretIdList: []string{"a", "b/c", "ü"}, NextToken: aws.String("page-2")})
				return err
			},
			func(h *capture, now func() time.Time) error {
				_, err := NewSecretsManager(Config{HTTPClient: h, Endpoint: smURL, Region: "eu-west-1", Credentials: testCreds, Now: now}).
					BatchGetSecretValue(ctx, &BatchGetSecretValueInput{SecretIdList: []string{"a", "b/c", "ü"}, NextToken: "page-2"})
				return err
			}},
		{"GetParameter",
			func(h *capture) error {
				_, err := ssm.NewFromConfig(sdkConfig(h, ssmURL)).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/phase/db:3"), WithDecryption: aws.Bool(true)})
				return err
			},
			func(h *capture, now func() time.Time) error {
				_, err := NewSSM(Config{HTTPClient: h, Endpoint: ssmURL, Region: "eu-west-1", Credentials: testCreds, Now: now}).
					GetParameter(ctx, &GetParameterInput{Name: "/phase/db:3", WithDecryption: true})
				return err
			}},
		{"GetParameters",
			func(h *capture) error {
				_, err := ssm.NewFromConfig(sdkConfig(h, ssmURL)).GetParameters(ctx, &ssm.GetParametersInput{Names: []string{"/a", "/b:label"}, WithDecryption: aws.Bool(true)})
				return err
			},
			func(h *capture, now func() time.Time) error {
				_, err := NewSSM(Config{HTTPClient: h, Endpoint: ssmURL, Region: "eu-west-1", Credentials: testCreds, Now: now}).
					GetParameters(ctx, &GetParametersInput{Names: []string{"/a", "/b:label"}, WithDecryption: true})
				return err
			}},
		{"GetParametersByPath",
			func(h *capture) error {
				_, err := ssm.NewFromConfig(sdkConfig(h, ssmURL)).GetParametersByPath(ctx, &ssm.GetParametersByPathInput{
					Path: aws.String("/phase"), Recursive: aws.Bool(true), WithDecryption: aws.Bool(true), MaxResults: aws.Int32(10), NextToken: aws.String("tok")})
				return err
			},
			func(h *capture, now func() time.Time) error {
				_, err := NewSSM(Config{HTTPClient: h, Endpoint: ssmURL, Region: "eu-west-1", Credentials: testCreds, Now: now}).
					GetParametersByPath(ctx, &GetParametersByPathInput{Path: "/phase", Recursive: true, WithDecryption: true, MaxResults: 10, NextToken: "tok"})
				return err
			}},
		{"GetParametersByPath, first page",
			func(h *capture) error {
				_, err := ssm.NewFromConfig(sdkConfig(h, ssmURL)).GetParametersByPath(ctx, &ssm.GetParametersByPathInput{
					Path: aws.String("/"), Recursive: aws.Bool(true), WithDecryption: aws.Bool(true), MaxResults: aws.Int32(10)})
				return err
			},
			func(h *capture, now func() time.Time) error {
				_, err := NewSSM(Config{HTTPClient: h, Endpoint: ssmURL, Region: "eu-west-1", Credentials: testCreds, Now: now}).
					GetParametersByPath(ctx, &GetParametersByPathInput{Path: "/", Recursive: true, WithDecryption: true, MaxResults: 10})
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sdk := &capture{}
			if err := tt.sdk(sdk); err != nil {
				t.Fatalf("SDK: %v", err)
			}
			// Sign at the SDK's signing time.
			at, err := time.Parse("20060102T150405Z", sdk.req.Header.Get("X-Amz-Date"))
			if err != nil {
				t.Fatal(err)
			}
			ours := &capture{}
			if err := tt.ours(ours, func() time.Time { return at }); err != nil {
				t.Fatalf("ours: %v", err)
			}
			want, got := wire(sdk.req, sdk.body), wire(ours.req, ours.body)
			if got != want {
				t.Errorf("request differs from the SDK's\nours:\n%s\n\nSDK:\n%s", got, want)
			}
			if !bytes.Contains(ours.body, []byte("{")) {
				t.Errorf("empty body %q", ours.body)
			}
		})
	}
}

// synthetic are answers moto does not give, shaped as AWS and the proxies
// in front of it send them. messageDiffers marks the one known difference:
// for an error code the SDK models (ResourceNotFoundException,
// DecryptionFailure, …) it reads the message with the modeled shape (an
// absent or oddly cased message is ""); this client reads every error the
// way the SDK reads the ones it does not model ("UnknownError" when absent,
// any case). Only the message text differs, which the source merely quotes.
var synthetic = []recorded{
	{Name: "throttled, code in the header", Service: "sm", Op: "GetSecretValue", Input: json.RawMessage(`{"SecretId":"x"}`), Status: 400,
		Header: map[string]string{"X-Amzn-Errortype": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/", "X-Amzn-Requestid": "r-1"},
		Body:   `{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate exceeded"}`},
	{Name: "throttled with Retry-After", Service: "ssm", Op: "GetParameters", Input: json.RawMessage(`{"Names":["/a"],"WithDecryption":true}`), Status: 429,
		Header: map[string]string{"Retry-After": "7"}, Body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`},
	{Name: "internal failure", Service: "ssm", Op: "GetParameter", Input: json.RawMessage(`{"Name":"/a","WithDecryption":true}`), Status: 500,
		Body: `{"__type":"InternalServerError","message":"oops"}`},
	{Name: "proxy 503 page", Service: "sm", Op: "BatchGetSecretValue", Input: json.RawMessage(`{"SecretIdList":["a"]}`), Status: 503,
		Header: map[string]string{"Content-Type": "text/html", "Retry-After": "120"}, Body: `<html><body>Service Unavailable</body></html>`},
	{Name: "access denied", Service: "sm", Op: "GetSecretValue", Input: json.RawMessage(`{"SecretId":"x"}`), Status: 400,
		Body: `{"__type":"AccessDeniedException","Message":"User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: secretsmanager:GetSecretValue"}`},
	{Name: "not found without a message", Service: "sm", Op: "GetSecretValue", Input: json.RawMessage(`{"SecretId":"x"}`), Status: 400,
		Body: `{"__type":"ResourceNotFoundException"}`, messageDiffers: true},
	{Name: "unknown code without a message", Service: "ssm", Op: "GetParameter", Input: json.RawMessage(`{"Name":"/a","WithDecryption":true}`), Status: 400,
		Body: `{"code":"SomethingNew"}`},
	{Name: "gateway JSON without a code", Service: "ssm", Op: "GetParameter", Input: json.RawMessage(`{"Name":"/a","WithDecryption":true}`), Status: 403,
		Body: `{"message":"Forbidden"}`},
	{Name: "upper-case MESSAGE", Service: "sm", Op: "GetSecretValue", Input: json.RawMessage(`{"SecretId":"x"}`), Status: 400,
		Body: `{"__type":"DecryptionFailure","MESSAGE":"kms"}`, messageDiffers: true},
	{Name: "empty error body", Service: "ssm", Op: "GetParametersByPath", Input: json.RawMessage(`{"Path":"/a","Recursive":true,"WithDecryption":true}`), Status: 502, Body: ``},
}

func loadRecorded(t *testing.T) []recorded {
	t.Helper()
	b, err := os.ReadFile(recordings)
	if err != nil {
		t.Fatal(err)
	}
	var rs []recorded
	if err := json.Unmarshal(b, &rs); err != nil {
		t.Fatal(err)
	}
	if len(rs) < 19 {
		t.Fatalf("%d recordings in %s, want the 19 cases TestRecordMoto records", len(rs), recordings)
	}
	return append(rs, synthetic...)
}

// replay answers every request with the recorded response.
func replay(r recorded) *capture {
	return &capture{resp: func(req *http.Request) *http.Response {
		h := http.Header{}
		for k, v := range r.Header {
			h.Set(k, v)
		}
		return &http.Response{StatusCode: r.Status, Header: h, Body: io.NopCloser(strings.NewReader(r.Body)), ContentLength: int64(len(r.Body)), Request: req}
	}}
}

// outcome is a decoded answer or error in a form both clients map to.
type outcome struct {
	Value any
	Err   *errOutcome
}

type errOutcome struct {
	Service, Operation string
	Status             int
	RequestID          string
	Code, Message      string // of the smithy.APIError, if any
	Deserialization    bool   // a smithy.DeserializationError
	RetryAfter         string
}

func errorOutcome(err error) *errOutcome {
	if err == nil {
		return nil
	}
	e := &errOutcome{}
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		e.Service, e.Operation = oe.Service(), oe.Operation()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.Status, e.RequestID = re.HTTPStatusCode(), re.ServiceRequestID()
		e.RetryAfter = re.Response.Header.Get("Retry-After")
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		e.Code, e.Message = ae.ErrorCode(), ae.ErrorMessage()
	}
	var de *smithy.DeserializationError
	e.Deserialization = errors.As(err, &de)
	return e
}

type secretOut struct {
	ARN, Name, VersionID string
	String               *string
	Binary               []byte
}

type paramOut struct {
	Name, Selector, Value string
	Version               int64
}

func str(t *SecretText) *string {
	if t == nil {
		return nil
	}
	s := string(*t)
	return &s
}

func ours(s SecretText) string { return string(s) }

// decodeBoth sends the recorded call through both clients against the
// recorded answer.
func decodeBoth(t *testing.T, r recorded) (sdkOut, ourOut outcome) {
	t.Helper()
	ctx := context.Background()
	sdkH, ourH := replay(r), replay(r)
	oc := Config{HTTPClient: ourH, Endpoint: "https://example.amazonaws.com", Region: "us-east-1", Credentials: testCreds}
	sc := sdkConfig(sdkH, "https://example.amazonaws.com")
	sc.Region = "us-east-1"
	unmarshal := func(v any) {
		if err := json.Unmarshal(r.Input, v); err != nil {
			t.Fatalf("input %s: %v", r.Input, err)
		}
	}
	switch r.Service + "." + r.Op {
	case "sm.GetSecretValue":
		var in GetSecretValueInput
		unmarshal(&in)
		var sin secretsmanager.GetSecretValueInput
		unmarshal(&sin)
		so, serr := secretsmanager.NewFromConfig(sc).GetSecretValue(ctx, &sin)
		if serr == nil {
			sdkOut.Value = secretOut{aws.ToString(so.ARN), aws.ToString(so.Name), aws.ToString(so.VersionId), so.SecretString, so.SecretBinary}
		}
		oo, oerr := NewSecretsManager(oc).GetSecretValue(ctx, &in)
		if oerr == nil {
			ourOut.Value = secretOut{oo.ARN, oo.Name, oo.VersionId, str(oo.SecretString), oo.SecretBinary}
		}
		sdkOut.Err, ourOut.Err = errorOutcome(serr), errorOutcome(oerr)
	case "sm.BatchGetSecretValue":
		var in BatchGetSecretValueInput
		unmarshal(&in)
		var sin secretsmanager.BatchGetSecretValueInput
		unmarshal(&sin)
		type batchOut struct {
			Values    []secretOut
			Errors    [][3]string
			NextToken string
		}
		so, serr := secretsmanager.NewFromConfig(sc).BatchGetSecretValue(ctx, &sin)
		if serr == nil {
			b := batchOut{NextToken: aws.ToString(so.NextToken)}
			for _, v := range so.SecretValues {
				b.Values = append(b.Values, secretOut{aws.ToString(v.ARN), aws.ToString(v.Name), aws.ToString(v.VersionId), v.SecretString, v.SecretBinary})
			}
			for _, e := range so.Errors {
				b.Errors = append(b.Errors, [3]string{aws.ToString(e.SecretId), aws.ToString(e.ErrorCode), aws.ToString(e.Message)})
			}
			sdkOut.Value = b
		}
		oo, oerr := NewSecretsManager(oc).BatchGetSecretValue(ctx, &in)
		if oerr == nil {
			b := batchOut{NextToken: oo.NextToken}
			for _, v := range oo.SecretValues {
				b.Values = append(b.Values, secretOut{v.ARN, v.Name, v.VersionId, str(v.SecretString), v.SecretBinary})
			}
			for _, e := range oo.Errors {
				b.Errors = append(b.Errors, [3]string{e.SecretId, e.ErrorCode, e.Message})
			}
			ourOut.Value = b
		}
		sdkOut.Err, ourOut.Err = errorOutcome(serr), errorOutcome(oerr)
	case "ssm.GetParameter":
		var in GetParameterInput
		unmarshal(&in)
		var sin ssm.GetParameterInput
		unmarshal(&sin)
		so, serr := ssm.NewFromConfig(sc).GetParameter(ctx, &sin)
		if serr == nil {
			sdkOut.Value = sdkParams([]ssmtypes.Parameter{*so.Parameter})
		}
		oo, oerr := NewSSM(oc).GetParameter(ctx, &in)
		if oerr == nil {
			ourOut.Value = ourParams([]Parameter{*oo.Parameter})
		}
		sdkOut.Err, ourOut.Err = errorOutcome(serr), errorOutcome(oerr)
	case "ssm.GetParameters":
		var in GetParametersInput
		unmarshal(&in)
		var sin ssm.GetParametersInput
		unmarshal(&sin)
		so, serr := ssm.NewFromConfig(sc).GetParameters(ctx, &sin)
		if serr == nil {
			sdkOut.Value = []any{sdkParams(so.Parameters), so.InvalidParameters}
		}
		oo, oerr := NewSSM(oc).GetParameters(ctx, &in)
		if oerr == nil {
			ourOut.Value = []any{ourParams(oo.Parameters), oo.InvalidParameters}
		}
		sdkOut.Err, ourOut.Err = errorOutcome(serr), errorOutcome(oerr)
	case "ssm.GetParametersByPath":
		var in GetParametersByPathInput
		unmarshal(&in)
		var sin ssm.GetParametersByPathInput
		unmarshal(&sin)
		so, serr := ssm.NewFromConfig(sc).GetParametersByPath(ctx, &sin)
		if serr == nil {
			sdkOut.Value = []any{sdkParams(so.Parameters), aws.ToString(so.NextToken)}
		}
		oo, oerr := NewSSM(oc).GetParametersByPath(ctx, &in)
		if oerr == nil {
			ourOut.Value = []any{ourParams(oo.Parameters), oo.NextToken}
		}
		sdkOut.Err, ourOut.Err = errorOutcome(serr), errorOutcome(oerr)
	default:
		t.Fatalf("unknown call %s.%s", r.Service, r.Op)
	}
	return sdkOut, ourOut
}

func sdkParams(ps []ssmtypes.Parameter) []paramOut {
	out := []paramOut{}
	for _, p := range ps {
		out = append(out, paramOut{aws.ToString(p.Name), aws.ToString(p.Selector), aws.ToString(p.Value), p.Version})
	}
	return out
}

func ourParams(ps []Parameter) []paramOut {
	out := []paramOut{}
	for _, p := range ps {
		out = append(out, paramOut{p.Name, p.Selector, ours(p.Value), p.Version})
	}
	return out
}

// TestSameDecoding: on moto's recorded answers to every case the source
// meets (values, binary, stages, versions, selectors, pages, batch errors,
// not-found, refused keys) and on AWS's throttling and failure shapes,
// this client decodes what the SDK's clients decode and fails as they fail:
// the same values, the same error code, message, HTTP status and request
// id, the same error types.
func TestSameDecoding(t *testing.T) {
	t.Parallel()
	for _, r := range loadRecorded(t) {
		t.Run(r.Name, func(t *testing.T) {
			t.Parallel()
			sdkOut, ourOut := decodeBoth(t, r)
			if r.messageDiffers && sdkOut.Err != nil && ourOut.Err != nil {
				sdkOut.Err.Message, ourOut.Err.Message = "", ""
			}
			s, _ := json.MarshalIndent(sdkOut, "", "  ")
			o, _ := json.MarshalIndent(ourOut, "", "  ")
			if string(s) != string(o) {
				t.Errorf("decoded differently\nours:\n%s\nSDK:\n%s", o, s)
			}
			if sdkOut.Value == nil && sdkOut.Err == nil {
				t.Error("nothing decoded")
			}
		})
	}
}
