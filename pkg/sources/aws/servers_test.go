package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// The emulators are real servers, started once per package run and shared;
// tests keep apart by unique names.

const testRegion = "us-east-1"

var (
	shared   sync.Mutex
	stops    []func()
	motoURL  string
	sharedMD *metadataMock
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Lock()
	for _, stop := range stops {
		stop()
	}
	shared.Unlock()
	os.Exit(code)
}

// proc starts a server process whose output goes to logFile.
func proc(t testing.TB, logFile string, env []string, name string, args ...string) func() {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
	}
}

// waitHTTP polls until try succeeds; a server that is not up in a minute
// fails the test (a readiness deadline, not a speed assertion).
func waitHTTP(t testing.TB, what, logFile string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := try()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logFile)
			t.Fatalf("%s not ready: %v\n%s", what, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startMoto starts a moto server with extra environment; the caller stops it.
func startMoto(t testing.TB, dir string, env ...string) (string, func()) {
	t.Helper()
	py := testenv.Tool(t, "PHASE_TEST_MOTO_PYTHON", "")
	port := testenv.FreePort(t)
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	logFile := filepath.Join(dir, "moto-"+strconv.Itoa(port)+".log")
	stop := proc(t, logFile, env, py, "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	waitHTTP(t, "moto", logFile, func() error {
		resp, err := http.Get(url + "/moto-api/data.json")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return url, stop
}

// sharedMoto is the package's moto server.
func sharedMoto(t testing.TB) string {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if motoURL == "" {
		dir, err := os.MkdirTemp("", "phase-aws-moto-")
		if err != nil {
			t.Fatal(err)
		}
		url, stop := startMoto(t, dir)
		motoURL = url
		stops = append(stops, stop, func() { os.RemoveAll(dir) })
	}
	return motoURL
}

// metadataMock is a running amazon-ec2-metadata-mock in IMDSv2-only mode.
type metadataMock struct {
	URL     string
	logFile string
}

// Log is what the mock printed; it logs every request it receives.
func (m *metadataMock) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(m.logFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// AssertNoIMDSv1 fails the test when the mock saw a request without a
// session token (it logs "No token provided" and answers 401).
func (m *metadataMock) AssertNoIMDSv1(t testing.TB) {
	t.Helper()
	if log := m.Log(t); strings.Contains(log, "No token provided") {
		t.Errorf("the metadata mock saw an IMDSv1 request:\n%s", log)
	}
}

// mockCredentials is the instance role document the mock serves.
type mockCredentials struct {
	Role, AccessKeyID, SecretAccessKey, Token string
	Expiration                                time.Time
}

// startMetadataMock starts the mock with "imdsv2": true and the given role
// credentials (nil: no role attached, security-credentials answers 404).
func startMetadataMock(t testing.TB, dir string, creds *mockCredentials) (*metadataMock, func()) {
	t.Helper()
	bin := testenv.Tool(t, "PHASE_TEST_EC2_METADATA_MOCK", "ec2-metadata-mock")
	metadata := map[string]any{}
	if creds != nil {
		metadata["values"] = map[string]any{
			"placement-region":              testRegion,
			"iam-security-credentials-role": creds.Role,
			"iam-security-credentials": map[string]any{
				"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
				"AccessKeyId": creds.AccessKeyID, "SecretAccessKey": creds.SecretAccessKey, "Token": creds.Token,
				"Expiration": creds.Expiration.UTC().Format(time.RFC3339),
			},
		}
	} else {
		// Move the credential paths away: the real paths answer 404, as on
		// an instance without an instance profile.
		metadata["paths"] = map[string]any{
			"iam-info":                      "/latest/meta-data/iam/moved-info",
			"iam-security-credentials-role": "/latest/meta-data/iam/moved",
			"iam-security-credentials":      "/latest/meta-data/iam/moved/x",
		}
	}
	cfg, err := json.Marshal(map[string]any{"imdsv2": true, "metadata": metadata})
	if err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	cfgFile := filepath.Join(dir, fmt.Sprintf("aemm-%d.json", port))
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	m := &metadataMock{URL: "http://127.0.0.1:" + strconv.Itoa(port), logFile: filepath.Join(dir, fmt.Sprintf("aemm-%d.log", port))}
	// HOME in the temp dir: the mock may save its config there.
	stop := proc(t, m.logFile, []string{"HOME=" + dir}, bin, "-n", "127.0.0.1", "-p", strconv.Itoa(port), "-c", cfgFile)
	waitHTTP(t, "ec2-metadata-mock", m.logFile, func() error {
		req, _ := http.NewRequest(http.MethodPut, m.URL+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("token PUT: HTTP %d", resp.StatusCode)
		}
		return nil
	})
	return m, stop
}

// sharedMetadataMock is the package's mock, serving a role whose keys moto
// accepts (moto takes any key as account 123456789012).
func sharedMetadataMock(t testing.TB) *metadataMock {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if sharedMD == nil {
		dir, err := os.MkdirTemp("", "phase-aws-aemm-")
		if err != nil {
			t.Fatal(err)
		}
		m, stop := startMetadataMock(t, dir, &mockCredentials{
			Role: "phase-node", AccessKeyID: "AKIAPHASENODE0000001", SecretAccessKey: "node-secret-key",
			Token: "node-session-token", Expiration: time.Now().Add(6 * time.Hour),
		})
		sharedMD = m
		stops = append(stops, stop, func() { os.RemoveAll(dir) })
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
