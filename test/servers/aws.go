package servers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// Moto starts a moto server (STS, Secrets Manager, SSM, …) with env added to
// its environment, its log in dir, and returns its URL.
func Moto(t testing.TB, dir string, env ...string) string {
	t.Helper()
	py := testenv.Tool(t, "PHASE_TEST_MOTO_PYTHON", "")
	port := strconv.Itoa(testenv.FreePort(t))
	url := "http://127.0.0.1:" + port
	logFile := filepath.Join(dir, "moto-"+port+".log")
	Process(t, logFile, env, py, "-m", "moto.server", "-H", "127.0.0.1", "-p", port)
	WaitHTTP(t, "moto", logFile, func() error {
		resp, err := http.Get(url + "/moto-api/data.json")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return url
}

// Credentials is the instance role the metadata mock serves.
type Credentials struct {
	Region                                    string // placement/region
	Role, AccessKeyID, SecretAccessKey, Token string
	Expiration                                time.Time
}

// IMDS is a running amazon-ec2-metadata-mock in IMDSv2-only mode.
type IMDS struct {
	URL     string
	logFile string
}

// MetadataMock starts the mock with "imdsv2": true, its config and log in
// dir, serving creds (nil: no role attached, the credential paths answer
// 404 as on an instance without an instance profile).
func MetadataMock(t testing.TB, dir string, creds *Credentials) *IMDS {
	t.Helper()
	bin := testenv.Tool(t, "PHASE_TEST_EC2_METADATA_MOCK", "ec2-metadata-mock")
	metadata := map[string]any{}
	if creds != nil {
		metadata["values"] = map[string]any{
			"placement-region":              creds.Region,
			"iam-security-credentials-role": creds.Role,
			"iam-security-credentials": map[string]any{
				"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
				"AccessKeyId": creds.AccessKeyID, "SecretAccessKey": creds.SecretAccessKey, "Token": creds.Token,
				"Expiration": creds.Expiration.UTC().Format(time.RFC3339),
			},
		}
	} else {
		// Move the credential paths away: the real paths answer 404.
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
	port := strconv.Itoa(testenv.FreePort(t))
	cfgFile := filepath.Join(dir, "aemm-"+port+".json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	m := &IMDS{URL: "http://127.0.0.1:" + port, logFile: filepath.Join(dir, "aemm-"+port+".log")}
	// HOME in dir: the mock may save its config there.
	Process(t, m.logFile, []string{"HOME=" + dir}, bin, "-n", "127.0.0.1", "-p", port, "-c", cfgFile)
	WaitHTTP(t, "ec2-metadata-mock", m.logFile, func() error {
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
	return m
}

// Log is what the mock printed; it logs every request it receives.
func (m *IMDS) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(m.logFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// AssertNoIMDSv1 fails the test when the mock saw a request without a
// session token (it logs "No token provided" and answers 401).
func (m *IMDS) AssertNoIMDSv1(t testing.TB) {
	t.Helper()
	if log := m.Log(t); strings.Contains(log, "No token provided") {
		t.Errorf("the metadata mock saw an IMDSv1 request:\n%s", log)
	}
}
