package awsjson

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
)

// record rewrites testdata/moto.json from a live moto:
//
//	PHASE_TEST_MOTO_PYTHON=… go test -run TestRecordMoto -record ./pkg/sources/aws/internal/awsjson/
var record = flag.Bool("record", false, "record testdata/moto.json from moto (needs PHASE_TEST_MOTO_PYTHON)")

const recordings = "testdata/moto.json"

// recorded is one answer as moto sent it: the call and the raw response.
type recorded struct {
	Name    string            `json:"name"`
	Service string            `json:"service"` // "sm" or "ssm"
	Op      string            `json:"op"`
	Input   json.RawMessage   `json:"input"`
	Status  int               `json:"status"`
	Header  map[string]string `json:"header"`
	Body    string            `json:"body"`

	messageDiffers bool // synthetic cases only: see synthetic
}

// recordedHeaders are the response headers kept: the ones either client reads.
var recordedHeaders = []string{"Content-Type", "X-Amzn-Requestid", "X-Amzn-Errortype", "Retry-After", "Date"}

// tap is an HTTP client that passes requests on and keeps the last
// response's status, headers and body.
type tap struct {
	next   aws.HTTPClient
	mu     sync.Mutex
	status int
	header map[string]string
	body   string
}

func (t *tap) Do(r *http.Request) (*http.Response, error) {
	resp, err := t.next.Do(r)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.status, t.body, t.header = resp.StatusCode, string(b), map[string]string{}
	for _, k := range recordedHeaders {
		if v := resp.Header.Get(k); v != "" && k != "Date" {
			t.header[k] = v
		}
	}
	t.mu.Unlock()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp, nil
}

// TestRecordMoto seeds moto and records its answers to every case the
// replay tests decode. The recordings are checked in; this runs only with
// -record.
func TestRecordMoto(t *testing.T) {
	if !*record {
		t.Skip("recording only with -record")
	}
	dir := t.TempDir()
	url := servers.Moto(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := credentials.NewStaticCredentialsProvider("AKIAADMIN00000000001", "admin-secret", "")
	cfg := aws.Config{Region: "us-east-1", Credentials: admin, BaseEndpoint: aws.String(url)}
	sm, ps := secretsmanager.NewFromConfig(cfg), ssm.NewFromConfig(cfg)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("prod/phase/db"), SecretString: aws.String(`{"password":"first-pass","user":"phase"}`)}))
	first, err := sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("prod/phase/db")})
	if err != nil {
		t.Fatal(err)
	}
	var firstVersion string
	for id := range first.VersionIdsToStages {
		firstVersion = id
	}
	must(sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("prod/phase/db"), SecretString: aws.String(`{"password":"second-pass \"é😀\\n","user":"phase"}`)}))
	must(sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("prod/phase/tls"), SecretBinary: []byte{0, 1, 2, 0xff}}))
	must(ps.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/phase/google/client_secret"), Value: aws.String("s3cr3t-one"), Type: ssmtypes.ParameterTypeSecureString}))
	must(ps.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/phase/google/client_secret"), Value: aws.String("s3cr3t-two"), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)}))
	must(ps.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/phase/hosts"), Value: aws.String("a.example,b.example"), Type: ssmtypes.ParameterTypeStringList}))
	for i := range 13 {
		must(ps.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/phase/app/nested/p" + strconv.Itoa(100 + i)[1:]), Value: aws.String("value-" + strconv.Itoa(i)), Type: ssmtypes.ParameterTypeSecureString}))
	}

	h := &tap{next: http.DefaultClient}
	c := Config{HTTPClient: h, Region: "us-east-1", Credentials: admin, Endpoint: url}
	smc, ssmc := NewSecretsManager(c), NewSSM(c)
	var out []recorded
	call := func(name, service, op string, in any, do func() error) {
		_ = do() // errors are recorded too
		b, _ := json.Marshal(in)
		h.mu.Lock()
		out = append(out, recorded{Name: name, Service: service, Op: op, Input: b, Status: h.status, Header: h.header, Body: h.body})
		h.mu.Unlock()
	}
	sv := func(name string, in *GetSecretValueInput) {
		call(name, "sm", "GetSecretValue", in, func() error { _, err := smc.GetSecretValue(ctx, in); return err })
	}
	sv("string secret", &GetSecretValueInput{SecretId: "prod/phase/db", VersionStage: "AWSCURRENT"})
	sv("previous stage", &GetSecretValueInput{SecretId: "prod/phase/db", VersionStage: "AWSPREVIOUS"})
	sv("version id", &GetSecretValueInput{SecretId: "prod/phase/db", VersionId: firstVersion})
	sv("binary secret", &GetSecretValueInput{SecretId: "prod/phase/tls", VersionStage: "AWSCURRENT"})
	sv("missing secret", &GetSecretValueInput{SecretId: "prod/phase/missing", VersionStage: "AWSCURRENT"})
	sv("missing version id", &GetSecretValueInput{SecretId: "prod/phase/db", VersionId: "00000000-0000-0000-0000-000000000000"})
	sv("missing stage", &GetSecretValueInput{SecretId: "prod/phase/db", VersionStage: "NOSUCHSTAGE"})
	batch := &BatchGetSecretValueInput{SecretIdList: []string{"prod/phase/db", "prod/phase/tls", "prod/phase/missing"}}
	call("batch", "sm", "BatchGetSecretValue", batch, func() error { _, err := smc.BatchGetSecretValue(ctx, batch); return err })

	gp := func(name string, in *GetParameterInput) {
		call(name, "ssm", "GetParameter", in, func() error { _, err := ssmc.GetParameter(ctx, in); return err })
	}
	gp("secure string", &GetParameterInput{Name: "/phase/google/client_secret", WithDecryption: true})
	gp("string list", &GetParameterInput{Name: "/phase/hosts", WithDecryption: true})
	gp("version selector", &GetParameterInput{Name: "/phase/google/client_secret:1", WithDecryption: true})
	gp("missing parameter", &GetParameterInput{Name: "/phase/missing", WithDecryption: true})
	gp("missing version", &GetParameterInput{Name: "/phase/google/client_secret:9", WithDecryption: true})
	gps := &GetParametersInput{Names: []string{"/phase/google/client_secret", "/phase/hosts", "/phase/google/client_secret:1", "/phase/missing"}, WithDecryption: true}
	call("parameters", "ssm", "GetParameters", gps, func() error { _, err := ssmc.GetParameters(ctx, gps); return err })
	page1 := &GetParametersByPathInput{Path: "/phase/app", Recursive: true, WithDecryption: true, MaxResults: 10}
	var next string
	call("path page 1", "ssm", "GetParametersByPath", page1, func() error {
		o, err := ssmc.GetParametersByPath(ctx, page1)
		if err == nil {
			next = o.NextToken
		}
		return err
	})
	page2 := &GetParametersByPathInput{Path: "/phase/app", Recursive: true, WithDecryption: true, MaxResults: 10, NextToken: next}
	call("path page 2", "ssm", "GetParametersByPath", page2, func() error { _, err := ssmc.GetParametersByPath(ctx, page2); return err })
	empty := &GetParametersByPathInput{Path: "/nothing/here", Recursive: true, WithDecryption: true, MaxResults: 10}
	call("empty path", "ssm", "GetParametersByPath", empty, func() error { _, err := ssmc.GetParametersByPath(ctx, empty); return err })

	// IAM enforced: an unknown key, and a user denied Secrets Manager.
	enforced := servers.Moto(t, dir, "INITIAL_NO_AUTH_ACTION_COUNT=0")
	stranger := Config{HTTPClient: h, Region: "us-east-1", Endpoint: enforced,
		Credentials: credentials.NewStaticCredentialsProvider("AKIAUNKNOWN000000001", "nope", "")}
	unknownKey := &GetSecretValueInput{SecretId: "prod/phase/db", VersionStage: "AWSCURRENT"}
	call("unknown access key", "sm", "GetSecretValue", unknownKey, func() error {
		_, err := NewSecretsManager(stranger).GetSecretValue(ctx, unknownKey)
		return err
	})
	unknownSSM := &GetParameterInput{Name: "/phase/hosts", WithDecryption: true}
	call("unknown access key, SSM", "ssm", "GetParameter", unknownSSM, func() error {
		_, err := NewSSM(stranger).GetParameter(ctx, unknownSSM)
		return err
	})

	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(recordings), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordings, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %d answers into %s", len(out), recordings)
}
