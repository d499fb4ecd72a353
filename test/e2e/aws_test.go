package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// The AWS tests run the binary the way it runs on EC2: credentials from the
// instance role over IMDSv2 (AWS's ec2-metadata-mock), an assumed role, and
// Secrets Manager and SSM (moto). The process environment holds nothing
// else that could supply credentials, so these tests set it with t.Setenv
// and do not run in parallel.

const (
	awsRegion = "us-east-1"
	// moto keeps a store per account; the assumed role's keys map to the
	// role's account, the instance role's keys to moto's default account.
	awsRoleAccount = "111122223333"
	awsRoleARN     = "arn:aws:iam::" + awsRoleAccount + ":role/phase-reader"
	awsExternalID  = "phase-e2e-external-id"
	// awsNodeKey is the instance role's access key id the mock serves.
	awsNodeKey = "AKIAPHASENODE0000001"
)

// startMoto starts moto for STS, Secrets Manager and SSM and returns its URL.
func startMoto(t *testing.T) string {
	t.Helper()
	return servers.Moto(t, t.TempDir())
}

// startMetadataMock serves an instance role whose keys moto accepts, with
// an expiration in the future (the mock's defaults expired in 2020).
func startMetadataMock(t *testing.T) *servers.IMDS {
	t.Helper()
	return servers.MetadataMock(t, t.TempDir(), &servers.Credentials{
		Region: awsRegion, Role: "phase-node",
		AccessKeyID: awsNodeKey, SecretAccessKey: "node-secret-key", Token: "node-session-token",
		Expiration: time.Now().Add(6 * time.Hour),
	})
}

// awsEnv gives the sidecar (which inherits this process's environment) the
// endpoints, and nothing that could supply credentials but IMDS.
func awsEnv(t *testing.T, imdsURL, motoURL string) {
	t.Helper()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_DEFAULT_REGION", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_EC2_METADATA_DISABLED", "AWS_EC2_METADATA_V1_DISABLED",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_STS"} {
		t.Setenv(k, "") // restores the old value when the test ends
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_REGION", awsRegion)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imdsURL)
	if motoURL == "" {
		// Nothing listens here: a test that gets past credentials fails.
		motoURL = "http://" + testenv.Addr(t)
	}
	t.Setenv("AWS_ENDPOINT_URL", motoURL)
}

// awsSeeder writes test data into moto with static keys, as an admin would.
type awsSeeder struct {
	sm  *secretsmanager.Client
	ssm *ssm.Client
}

func awsCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newAWSSeeder(moto string, creds aws.CredentialsProvider) *awsSeeder {
	cfg := aws.Config{Region: awsRegion, Credentials: creds, BaseEndpoint: aws.String(moto)}
	return &awsSeeder{sm: secretsmanager.NewFromConfig(cfg), ssm: ssm.NewFromConfig(cfg)}
}

// awsSeeders returns a seeder for the assumed role's account, where the
// sidecar must read, and one for moto's default account, the instance
// role's, where it must not.
func awsSeeders(t *testing.T, moto string) (role, node *awsSeeder) {
	t.Helper()
	admin := credentials.NewStaticCredentialsProvider("AKIAADMIN00000000001", "admin-secret", "")
	client := sts.NewFromConfig(aws.Config{Region: awsRegion, Credentials: admin, BaseEndpoint: aws.String(moto)})
	out, err := client.AssumeRole(awsCtx(t), &sts.AssumeRoleInput{RoleArn: aws.String(awsRoleARN), RoleSessionName: aws.String("seeder")})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	role = newAWSSeeder(moto, credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken))
	return role, newAWSSeeder(moto, admin)
}

func (s *awsSeeder) secret(t *testing.T, name, str string) string {
	t.Helper()
	out, err := s.sm.CreateSecret(awsCtx(t), &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(str)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.VersionId)
}

// rotate is PutSecretValue: moto's RotateSecret needs a Lambda.
func (s *awsSeeder) rotate(t *testing.T, name, str string) string {
	t.Helper()
	out, err := s.sm.PutSecretValue(awsCtx(t), &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(str)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.VersionId)
}

func (s *awsSeeder) deleteSecret(t *testing.T, name string) {
	t.Helper()
	_, err := s.sm.DeleteSecret(awsCtx(t), &secretsmanager.DeleteSecretInput{SecretId: aws.String(name), ForceDeleteWithoutRecovery: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
}

func (s *awsSeeder) param(t *testing.T, name, value string, typ ssmtypes.ParameterType, overwrite bool) int64 {
	t.Helper()
	out, err := s.ssm.PutParameter(awsCtx(t), &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(value), Type: typ, Overwrite: aws.Bool(overwrite),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Version
}

// assumedRoles lists the AssumeRole calls moto answered as "ROLE-ARN
// SESSION-NAME EXTERNAL-ID", leaving out the keys it issued.
func assumedRoles(t *testing.T, moto string) []string {
	t.Helper()
	resp, err := http.Get(moto + "/moto-api/data.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var data struct {
		STS struct {
			AssumedRole []struct {
				RoleARN     string `json:"role_arn"`
				SessionName string `json:"session_name"`
				ExternalID  string `json:"external_id"`
			}
		} `json:"sts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&data); err != nil {
		t.Fatalf("moto data.json: %v", err)
	}
	var out []string
	for _, r := range data.STS.AssumedRole {
		out = append(out, strings.Join([]string{r.RoleARN, r.SessionName, r.ExternalID}, " "))
	}
	return out
}

// awsStatus is /v1/status, the fields these tests read.
type awsStatus struct {
	Ready   bool `json:"ready"`
	Secrets []struct {
		Name      string   `json:"name"`
		Source    string   `json:"source"`
		Version   string   `json:"version"`
		Files     []string `json:"files"`
		Written   bool     `json:"written"`
		LastError string   `json:"last_error"`
	} `json:"secrets"`
}

func (s *sidecar) awsStatus() awsStatus {
	s.t.Helper()
	_, body := s.get("/v1/status")
	var st awsStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		s.t.Fatalf("status is not JSON: %v\n%s", err, body)
	}
	return st
}

// secretStatus returns one secret's version, last error and files.
func (s *sidecar) secretStatus(name string) (version, lastError string, files []string) {
	s.t.Helper()
	for _, sec := range s.awsStatus().Secrets {
		if sec.Name == name {
			return sec.Version, sec.LastError, sec.Files
		}
	}
	s.t.Fatalf("secret %s not in /v1/status", name)
	return "", "", nil
}

// metric returns the value of the sample whose name and labels are series
// (as the exposition format writes them, labels sorted), or -1.
func (s *sidecar) metric(series string) float64 {
	s.t.Helper()
	_, m := s.get("/metrics")
	for _, l := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				s.t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return -1
}

func TestAWSInstanceRoleToFiles(t *testing.T) {
	moto, md := startMoto(t), startMetadataMock(t)
	awsEnv(t, md.URL, moto)
	seed, decoy := awsSeeders(t, moto)

	dbV1 := seed.secret(t, "prod/phase/db", fmt.Sprintf(`{"password":%q,"user":"phase"}`, value("db-1")))
	seed.secret(t, "prod/phase/api", value("api-1"))
	seed.param(t, "/phase/db_password", value("pg-1"), ssmtypes.ParameterTypeSecureString, false)
	seed.param(t, "/phase/sso/client_id", value("sso-id-1"), ssmtypes.ParameterTypeString, false)
	seed.param(t, "/phase/sso/oauth/client_secret", value("sso-secret-1"), ssmtypes.ParameterTypeSecureString, false)
	// The same names in the instance role's own account: the files would
	// hold these if the sidecar skipped AssumeRole.
	decoy.secret(t, "prod/phase/db", fmt.Sprintf(`{"password":%q}`, value("wrong-account")))
	decoy.secret(t, "prod/phase/api", value("wrong-account"))
	decoy.param(t, "/phase/db_password", value("wrong-account"), ssmtypes.ParameterTypeSecureString, false)

	out := shm(t)
	cfg, addr := writeConfig(t, out, fmt.Sprintf(`refresh: 1h
sources:
  aws:
    assume_role:
      role_arn: %q
      external_id: %s
secrets:
  - name: DATABASE_PASSWORD
    ref: aws-sm://prod/phase/db#password
    refresh: 1s
  - name: API_KEY
    ref: aws-sm://prod/phase/api
    refresh: 1s
  - name: PG_PASSWORD
    ref: aws-ssm:///phase/db_password
    refresh: 1s
  - name: SSO
    ref: aws-ssm:///phase/sso/?recursive=true
    refresh: 1s
`, awsRoleARN, awsExternalID))
	if code, o := runCmd(t, "validate", "--config", cfg); code != 0 {
		t.Fatalf("validate = %d: %s", code, o)
	}
	s := start(t, cfg, addr)
	s.waitReady()
	file := func(name string) string { return filepath.Join(out, name) }

	t.Run("first sync", func(t *testing.T) {
		waitFile(t, file("database_password"), value("db-1"))
		waitFile(t, file("api_key"), value("api-1"))
		waitFile(t, file("pg_password"), value("pg-1"))
		// The documented naming rule: relative name, "/" → "_", under the
		// secret's lower-cased name.
		waitFile(t, file("sso_client_id"), value("sso-id-1"))
		waitFile(t, file("sso_oauth_client_secret"), value("sso-secret-1"))
		if v, _, _ := s.secretStatus("DATABASE_PASSWORD"); v != dbV1 {
			t.Errorf("DATABASE_PASSWORD version = %q, want the VersionId %q", v, dbV1)
		}
		if v, _, _ := s.secretStatus("PG_PASSWORD"); v != "1" {
			t.Errorf("PG_PASSWORD version = %q, want 1", v)
		}
		_, _, files := s.secretStatus("SSO")
		if want := []string{file("sso_client_id"), file("sso_oauth_client_secret")}; fmt.Sprint(files) != fmt.Sprint(want) {
			t.Errorf("SSO files = %v, want %v", files, want)
		}
		for _, src := range []string{"aws-sm", "aws-ssm"} {
			if v := s.metric(`phase_sidecar_source_up{source="` + src + `"}`); v != 1 {
				t.Errorf("source_up{%s} = %v, want 1", src, v)
			}
			if v := s.metric(`phase_sidecar_source_credential_expiry_timestamp_seconds{source="` + src + `"}`); v < float64(time.Now().Unix()) {
				t.Errorf("credential expiry of %s = %v, want a time in the future", src, v)
			}
		}
		// AssumeRole carried the session name and the external id.
		if got := assumedRoles(t, moto); !slices.Contains(got, awsRoleARN+" phase-sidecar "+awsExternalID) {
			t.Errorf("moto saw no AssumeRole of %s with the external id; it saw %q", awsRoleARN, got)
		}
		// Only IMDSv2 was used, and the instance role was read from it.
		md.AssertNoIMDSv1(t)
		log := md.Log(t)
		if !strings.Contains(log, "Token validated!") || !strings.Contains(log, "security-credentials/phase-node") {
			t.Errorf("the sidecar did not read the instance role from the mock:\n%s", log)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		dbV2 := seed.rotate(t, "prod/phase/db", fmt.Sprintf(`{"password":%q,"user":"phase"}`, value("db-2")))
		waitFile(t, file("database_password"), value("db-2"))
		eventually(t, "the status to show the new VersionId", func() bool {
			v, _, _ := s.secretStatus("DATABASE_PASSWORD")
			return v == dbV2
		})
		if dbV2 == dbV1 {
			t.Errorf("PutSecretValue kept VersionId %q", dbV1)
		}
		if n := seed.param(t, "/phase/db_password", value("pg-2"), ssmtypes.ParameterTypeSecureString, true); n != 2 {
			t.Fatalf("overwrite made version %d", n)
		}
		waitFile(t, file("pg_password"), value("pg-2"))
		eventually(t, "the status to show parameter version 2", func() bool {
			v, _, _ := s.secretStatus("PG_PASSWORD")
			return v == "2"
		})
		seed.param(t, "/phase/sso/oauth/client_secret", value("sso-secret-2"), ssmtypes.ParameterTypeSecureString, true)
		waitFile(t, file("sso_oauth_client_secret"), value("sso-secret-2"))
	})

	t.Run("deleted secret keeps the last good file", func(t *testing.T) {
		series := `phase_sidecar_secret_fetch_errors_total{reason="not_found",secret="API_KEY",source="aws-sm"}`
		seed.deleteSecret(t, "prod/phase/api")
		eventually(t, "the status to show API_KEY's error", func() bool {
			_, e, _ := s.secretStatus("API_KEY")
			return strings.Contains(e, "prod/phase/api")
		})
		_, e, _ := s.secretStatus("API_KEY")
		t.Logf("API_KEY last_error: %s", e)
		first := s.metric(series)
		if first < 1 {
			t.Fatalf("%s = %v after the delete, want ≥ 1", series, first)
		}
		eventually(t, "the not_found count to grow on the next refresh", func() bool { return s.metric(series) > first })
		if b, err := os.ReadFile(file("api_key")); err != nil || string(b) != value("api-1") {
			t.Fatalf("api_key lost its last good value after the delete (err %v)", err)
		}
		if c, _ := s.get("/readyz"); c != 200 {
			t.Errorf("/readyz = %d after a fetch error; written once is ready", c)
		}
		// The secret read in the same batch is unaffected.
		seed.rotate(t, "prod/phase/db", fmt.Sprintf(`{"password":%q,"user":"phase"}`, value("db-3")))
		waitFile(t, file("database_password"), value("db-3"))
		if _, e, _ := s.secretStatus("DATABASE_PASSWORD"); e != "" {
			t.Errorf("DATABASE_PASSWORD shows an error: %s", e)
		}
		if b, _ := os.ReadFile(file("api_key")); string(b) != value("api-1") {
			t.Fatal("api_key changed after the delete")
		}
	})

	if code := s.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// silentListener accepts connections and never answers, like IMDS whose
// token answer is dropped one hop short (hop limit 1 in a container).
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

func TestAWSIMDSDiagnosis(t *testing.T) {
	const body = "secrets:\n  - name: DATABASE_PASSWORD\n    ref: aws-sm://prod/phase/db#password\n"
	for _, tc := range []struct {
		name     string
		endpoint func(*testing.T) string
		want     []string
	}{
		{"token PUT never answered", silentListener, []string{
			"IMDSv2 token request", "got no answer", "hop limit of 1",
			"--http-put-response-hop-limit 2 --http-endpoint enabled"}},
		{"connection refused", func(t *testing.T) string { return "http://" + testenv.Addr(t) }, []string{
			"refused", "not an EC2 instance or its metadata endpoint is disabled",
			"sources.aws.credentials: default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			awsEnv(t, tc.endpoint(t), "")
			// run and once side by side: each waits out the SDK's timeout.
			runOut := shm(t)
			runCfg, addr := writeConfig(t, runOut, body)
			s := start(t, runCfg, addr)

			out := shm(t)
			cfg, _ := writeConfig(t, out, body)
			code, o := runCmd(t, "once", "--config", cfg, "--log-level", "debug")
			if code != 1 {
				t.Errorf("once = %d, want 1\n%s", code, o)
			}
			for _, w := range tc.want {
				if !strings.Contains(o, w) {
					t.Errorf("once output lacks %q:\n%s", w, o)
				}
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("once wrote %d files without credentials", len(entries))
			}

			// run: /v1/status and the start-up log say the same.
			eventually(t, "/healthz 200", func() bool { c, _ := s.get("/healthz"); return c == 200 })
			eventually(t, "the status to show the IMDS problem", func() bool {
				_, e, _ := s.secretStatus("DATABASE_PASSWORD")
				return e != ""
			})
			_, e, _ := s.secretStatus("DATABASE_PASSWORD")
			for _, w := range tc.want {
				if !strings.Contains(e, w) {
					t.Errorf("status last_error lacks %q: %s", w, e)
				}
			}
			if c, _ := s.get("/readyz"); c != 503 {
				t.Errorf("/readyz = %d without credentials, want 503", c)
			}
			if v := s.metric(`phase_sidecar_source_up{source="aws-sm"}`); v != 0 {
				t.Errorf("source_up{aws-sm} = %v, want 0", v)
			}
			if entries, _ := os.ReadDir(runOut); len(entries) != 0 {
				t.Errorf("run wrote %d files without credentials", len(entries))
			}
			eventually(t, "the start-up check to log the problem", func() bool {
				return strings.Contains(s.out.String(), "source check failed") && strings.Contains(s.out.String(), tc.want[len(tc.want)-1])
			})
		})
	}
}
