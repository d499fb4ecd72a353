package vault

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// startProcess runs a server whose output goes to a file in dir, and waits
// until ready succeeds (polling: these servers print nothing reliable).
func startProcess(t *testing.T, dir, name string, ready func() error, bin string, args ...string) {
	t.Helper()
	logFile := filepath.Join(dir, filepath.Base(bin)+".log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		f.Close()
	})
	deadline := time.After(time.Minute) // a readiness bound, not a speed assertion
	for {
		err := ready()
		if err == nil {
			return
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logFile)
			t.Fatalf("%s exited:\n%s", name, out)
		case <-deadline:
			out, _ := os.ReadFile(logFile)
			t.Fatalf("%s not ready: %v\n%s", name, err, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func httpReady(method, url string, header ...string) func() error {
	return func() error {
		req, _ := http.NewRequest(method, url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: HTTP %d", method, url, resp.StatusCode)
		}
		return nil
	}
}

// TestAWSAuth logs in with Vault's aws (IAM) method: Vault replays the
// signed sts:GetCallerIdentity to moto (its sts_endpoint); the sidecar
// signs with instance-role credentials from the EC2 metadata mock (IMDSv2),
// for the global endpoint by default and as STSRegion and STSEndpoint say
// otherwise.
func TestAWSAuth(t *testing.T) {
	d := vaultDev(t)
	f := newKVFixture(t, d)
	py := testenv.Tool(t, "PHASE_TEST_MOTO_PYTHON", "")
	mockBin := testenv.Tool(t, "PHASE_TEST_EC2_METADATA_MOCK", "ec2-metadata-mock")
	dir := t.TempDir()

	motoPort := testenv.FreePort(t)
	motoURL := "http://127.0.0.1:" + strconv.Itoa(motoPort)
	startProcess(t, dir, "moto", httpReady(http.MethodGet, motoURL+"/moto-api/data.json"),
		py, "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(motoPort))

	mdCfg, _ := json.Marshal(map[string]any{"imdsv2": true, "metadata": map[string]any{"values": map[string]any{
		"iam-security-credentials-role": "phase-node",
		"iam-security-credentials": map[string]any{
			"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
			"AccessKeyId": "AKIAPHASEVAULT000001", "SecretAccessKey": "s3cr3t-canary-aws", "Token": "session-token",
			"Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		},
	}}})
	cfgFile := filepath.Join(dir, "aemm.json")
	writeFile(t, cfgFile, string(mdCfg))
	mdPort := testenv.FreePort(t)
	mdURL := "http://127.0.0.1:" + strconv.Itoa(mdPort)
	startProcess(t, dir, "ec2-metadata-mock",
		httpReady(http.MethodPut, mdURL+"/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds", "60"),
		mockBin, "-n", "127.0.0.1", "-p", strconv.Itoa(mdPort), "-c", cfgFile)

	creds := aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) {
		o.Client = imds.New(imds.Options{Endpoint: mdURL})
	}))

	mount := unique("aws")
	d.enableAuth(t, mount, "aws")
	d.write(t, "auth/"+mount+"/config/client", map[string]any{
		"sts_endpoint":               motoURL,
		"sts_region":                 "us-east-1",
		"iam_endpoint":               motoURL,
		"access_key":                 "AKIAVAULTSERVER00001",
		"secret_key":                 "vault-server-key",
		"iam_server_id_header_value": "vault.phase.test",
	})
	d.write(t, "auth/"+mount+"/role/app", map[string]any{
		"auth_type":               "iam",
		"bound_iam_principal_arn": "arn:aws:iam::123456789012:user/moto", // moto answers any key with this user
		"resolve_aws_unique_ids":  false,
		"token_policies":          f.policy,
		"token_ttl":               "1h",
	})
	s := newSource(t, d, Config{Auth: Auth{
		Method: "aws", Mount: mount, Role: "app", ServerIDHeader: "vault.phase.test",
	}}, Options{AWSCredentials: creds})
	f.fetch(t, s)

	// Without the server ID header Vault refuses the login.
	s = newSource(t, d, Config{Auth: Auth{Method: "aws", Mount: mount, Role: "app"}}, Options{AWSCredentials: creds})
	if _, err := s.Fetch(t.Context(), testenv.Ref(t, f.ref)); err == nil {
		t.Error("a login without the server ID header succeeded")
	} else {
		t.Logf("error: %v", err)
		if !strings.Contains(err.Error(), "X-Vault-AWS-IAM-Server-ID") {
			t.Errorf("err = %v, want it to name the missing header", err)
		}
		checkNoCanary(t, err)
	}

	// With sts_region (and sts_endpoint) set, the request is addressed and
	// signed as Vault's mount is configured: Vault replays it, keeping the
	// signed Host, to a recorder in front of moto.
	rec := newSTSRecorder(t, motoURL)
	for _, tt := range []struct {
		name     string
		auth     Auth
		wantHost string
		// moto answers in the partition of the Host it is sent
		principal string
	}{
		{"regional endpoint of a region alone", Auth{STSRegion: "us-gov-west-1"}, "sts.us-gov-west-1.amazonaws.com", "arn:aws-us-gov:iam::123456789012:user/moto"},
		{"region and endpoint", Auth{STSRegion: "eu-west-1", STSEndpoint: rec.url}, strings.TrimPrefix(rec.url, "http://"), "arn:aws:iam::123456789012:user/moto"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mount := unique("aws")
			d.enableAuth(t, mount, "aws")
			d.write(t, "auth/"+mount+"/config/client", map[string]any{
				"sts_endpoint": rec.url, "sts_region": tt.auth.STSRegion, "iam_endpoint": motoURL,
				"access_key": "AKIAVAULTSERVER00001", "secret_key": "vault-server-key",
			})
			d.write(t, "auth/"+mount+"/role/app", map[string]any{
				"auth_type": "iam", "bound_iam_principal_arn": tt.principal,
				"resolve_aws_unique_ids": false, "token_policies": f.policy, "token_ttl": "1h",
			})
			tt.auth.Method, tt.auth.Mount, tt.auth.Role = "aws", mount, "app"
			f.fetch(t, newSource(t, d, Config{Auth: tt.auth}, Options{AWSCredentials: creds}))
			host, authz := rec.last()
			if host != tt.wantHost {
				t.Errorf("STS saw Host %q, want %q", host, tt.wantHost)
			}
			if scope := "/" + tt.auth.STSRegion + "/sts/aws4_request"; !strings.Contains(authz, scope) {
				t.Errorf("STS saw Authorization %q, want the scope %s", authz, scope)
			}
		})
	}
}

// stsRecorder stands in for STS: it records the Host and Authorization of
// what Vault replays and passes it on to moto.
type stsRecorder struct {
	url         string
	mu          sync.Mutex
	host, authz string
}

func newSTSRecorder(t *testing.T, moto string) *stsRecorder {
	target, err := url.Parse(moto)
	if err != nil {
		t.Fatal(err)
	}
	r := &stsRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(target) // keeps the Host header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.host, r.authz = req.Host, req.Header.Get("Authorization")
		r.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *stsRecorder) last() (host, authz string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.host, r.authz
}
