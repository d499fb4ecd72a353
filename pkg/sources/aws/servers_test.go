package aws

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
)

// The emulators are real servers, started once per package run and shared;
// tests keep apart by unique names.

const testRegion = "us-east-1"

var (
	shared   servers.Shared
	sharedMu sync.Mutex
	motoURL  string
	sharedMD *servers.IMDS
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

// sharedMoto is the package's moto server.
func sharedMoto(t testing.TB) string {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if motoURL == "" {
		st := shared.T(t)
		motoURL = servers.Moto(st, st.TempDir())
	}
	return motoURL
}

// sharedMetadataMock is the package's mock, serving a role whose keys moto
// accepts (moto takes any key as account 123456789012).
func sharedMetadataMock(t testing.TB) *servers.IMDS {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedMD == nil {
		st := shared.T(t)
		sharedMD = servers.MetadataMock(st, st.TempDir(), &servers.Credentials{
			Region: testRegion, Role: "phase-node", AccessKeyID: "AKIAPHASENODE0000001", SecretAccessKey: "node-secret-key",
			Token: "node-session-token", Expiration: time.Now().Add(6 * time.Hour),
		})
	}
	return sharedMD
}

// envMap is an Options.Env over a fixed map: nothing from the process
// environment reaches the source.
func envMap(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// recorder is an HTTP client that counts AWS API calls by operation and
// keeps STS request bodies (which carry no secret values).
type recorder struct {
	next aws.HTTPClient
	mu   sync.Mutex
	ops  map[string]int
	sts  []string
	keys map[string]map[string]bool // service ("sts", "secretsmanager", "ssm") → signing access key ids
}

func newRecorder() *recorder {
	return &recorder{next: awshttp.NewBuildableClient(), ops: map[string]int{}, keys: map[string]map[string]bool{}}
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	op := req.Header.Get("X-Amz-Target") // JSON protocols: "secretsmanager.GetSecretValue"
	if op == "" && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte("Action=")) {
			for _, kv := range strings.Split(string(body), "&") {
				if v, ok := strings.CutPrefix(kv, "Action="); ok {
					op = "sts." + v
				}
			}
			r.mu.Lock()
			r.sts = append(r.sts, string(body))
			r.mu.Unlock()
		}
	}
	if _, after, ok := strings.Cut(op, "."); ok && strings.HasPrefix(op, "AmazonSSM") {
		op = "ssm." + after
	}
	r.mu.Lock()
	r.ops[op]++
	// Authorization: AWS4-HMAC-SHA256 Credential=AKIA…/date/region/service/aws4_request, …
	if _, cred, ok := strings.Cut(req.Header.Get("Authorization"), "Credential="); ok {
		parts := strings.Split(strings.SplitN(cred, ",", 2)[0], "/")
		if len(parts) >= 4 {
			if r.keys[parts[3]] == nil {
				r.keys[parts[3]] = map[string]bool{}
			}
			r.keys[parts[3]][parts[0]] = true
		}
	}
	r.mu.Unlock()
	return r.next.Do(req)
}

func (r *recorder) count(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[op]
}

// signers lists the access key ids that signed requests to service.
func (r *recorder) signers(service string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id := range r.keys[service] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.ops {
		n += c
	}
	return n
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = map[string]int{}
	r.sts = nil
}

func (r *recorder) stsBodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sts...)
}

var uniqSeq atomic.Int64

// uniq makes a name unique within the shared emulators, also across
// -count runs.
func uniq(t testing.TB, prefix string) string {
	return fmt.Sprintf("%s%s-%d", prefix, strings.ToLower(strings.NewReplacer("/", "-").Replace(t.Name())), uniqSeq.Add(1))
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
