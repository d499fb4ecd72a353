package aws

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws/internal/awsjson"
)

// TestRegionNames: a region that is not a region name is refused before
// any client is built, whatever its origin; every partition's regions are
// accepted.
func TestRegionNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      Config
		env      []string
		errWants []string
	}{
		{name: "commercial", cfg: Config{Region: "eu-west-1"}},
		{name: "china", env: []string{"AWS_REGION", "cn-northwest-1"}},
		{name: "GovCloud", env: []string{"AWS_DEFAULT_REGION", "us-gov-west-1"}},
		{name: "ISO", env: []string{"AWS_REGION", "us-iso-east-1"}},
		{name: "ISO-B", env: []string{"AWS_REGION", "us-isob-east-1"}},
		{name: "ISO-E", env: []string{"AWS_REGION", "eu-isoe-west-1"}},
		{name: "ISO-F", env: []string{"AWS_REGION", "us-isof-south-1"}},
		{name: "European sovereign cloud", env: []string{"AWS_REGION", "eusc-de-east-1"}},
		{name: "host in AWS_REGION", env: []string{"AWS_REGION", "x@evil.example/#"}, errWants: []string{`"x@evil.example/#"`, "AWS_REGION", "not a region name"}},
		{name: "host in AWS_DEFAULT_REGION", env: []string{"AWS_DEFAULT_REGION", "evil.example"}, errWants: []string{"AWS_DEFAULT_REGION", "not a region name"}},
		{name: "host in sources.aws.region", cfg: Config{Region: "eu-west-1.evil.example#"}, errWants: []string{"sources.aws.region"}},
		{name: "pseudo-region", env: []string{"AWS_REGION", "aws-global"}, errWants: []string{"not a region name"}},
		{name: "FIPS not a boolean", cfg: Config{Region: "us-east-1"}, env: []string{"AWS_USE_FIPS_ENDPOINT", "yes"}, errWants: []string{"AWS_USE_FIPS_ENDPOINT", "want true or false"}},
		{name: "IMDS endpoint mode", env: []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv5"}, errWants: []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "want IPv4 or IPv6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(context.Background(), tt.cfg, Options{Env: envMap(tt.env...)})
			if tt.errWants == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.errWants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

// firstRequest is an HTTP client that records the URL of every request and
// answers 200 with an empty JSON object (or the STS XML of a role).
type firstRequest struct {
	mu   sync.Mutex
	urls []string
}

func (f *firstRequest) Do(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.urls = append(f.urls, r.URL.Scheme+"://"+r.URL.Host+r.URL.Path)
	f.mu.Unlock()
	body, ct := "{}", "application/x-amz-json-1.1"
	if r.Header.Get("X-Amz-Target") == "" {
		body, ct = `<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>AKIAROLE</AccessKeyId><SecretAccessKey>s</SecretAccessKey>`+
			`<SessionToken>t</SessionToken><Expiration>2100-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>`, "text/xml"
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {ct}}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
}

func (f *firstRequest) last(t *testing.T) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.urls) == 0 {
		t.Fatal("no request sent")
	}
	return f.urls[len(f.urls)-1]
}

// sdkURLs are the URLs the SDK's own Secrets Manager, SSM and STS clients,
// built from cfg, send their requests to ("ERR" for a refusal).
func sdkURLs(t *testing.T, cfg aws.Config) (sm, ps, st string) {
	t.Helper()
	ctx := context.Background()
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	url := func(call func(h *firstRequest) error) string {
		h := &firstRequest{}
		if err := call(h); err != nil {
			return "ERR"
		}
		return h.last(t)
	}
	sm = url(func(h *firstRequest) error {
		_, err := secretsmanager.NewFromConfig(withHTTP(cfg, h)).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("x")})
		return err
	})
	ps = url(func(h *firstRequest) error {
		_, err := ssm.NewFromConfig(withHTTP(cfg, h)).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/x")})
		return err
	})
	st = url(func(h *firstRequest) error {
		_, err := sts.NewFromConfig(withHTTP(cfg, h)).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("s")})
		return err
	})
	return sm, ps, st
}

func withHTTP(cfg aws.Config, h aws.HTTPClient) aws.Config {
	cfg.HTTPClient = h
	return cfg
}

// ourURLs are the URLs the source sends Secrets Manager, SSM and STS
// (AssumeRole) requests to.
func ourURLs(t *testing.T, mode string, env func(string) string) (sm, ps, st string) {
	t.Helper()
	h := &firstRequest{}
	cfg := Config{Credentials: mode, AssumeRole: &AssumeRole{RoleARN: roleARN}}
	s, err := New(context.Background(), cfg, Options{Env: env, HTTPClient: h})
	if err != nil {
		t.Fatal(err)
	}
	if mode == CredentialsIMDS {
		// Base credentials without IMDS: only the endpoints matter here.
		s.set.base = aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIAENV", SecretAccessKey: "s", Source: "test"}, nil
		}))
		if err := s.build(context.Background(), s.set.region, s.set.regionOrigin); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.credentials(context.Background(), ""); err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	st = h.last(t)
	return s.sm.(awsjson.SecretsManager).URL(), s.ssm.(awsjson.SSM).URL(), st
}

// TestEndpointsAsTheSDK: for the same environment and shared files, the
// source sends Secrets Manager, SSM and STS requests where the SDK's own
// clients would, in both credential modes: regional, FIPS, dual-stack and
// both, in every partition, and configured endpoints by the SDK's
// precedence. One deliberate difference: a configured endpoint together
// with FIPS or dual-stack is used as given, where the SDK refuses every
// request. The environment is the process's (t.Setenv), since the SDK reads
// nothing else.
func TestEndpointsAsTheSDK(t *testing.T) {
	regions := []string{"us-east-1", "cn-north-1", "us-gov-west-1", "us-iso-east-1", "us-isob-east-1", "eu-isoe-west-1", "us-isof-south-1", "eusc-de-east-1"}
	type row struct {
		name    string
		env     []string
		profile string // AWS_CONFIG_FILE content; "default" mode only
		// want overrides the SDK's answer where it refuses: the explicit
		// endpoint, for Secrets Manager, SSM and STS.
		want []string
	}
	var rows []row
	for _, r := range regions {
		for _, flags := range [][]string{nil, {"AWS_USE_FIPS_ENDPOINT", "true"}, {"AWS_USE_DUALSTACK_ENDPOINT", "true"},
			{"AWS_USE_FIPS_ENDPOINT", "true", "AWS_USE_DUALSTACK_ENDPOINT", "true"}} {
			rows = append(rows, row{name: r + " " + strings.Join(flags, " "), env: append([]string{"AWS_REGION", r}, flags...)})
		}
	}
	rows = append(rows,
		row{name: "global endpoint", env: []string{"AWS_REGION", "eu-west-1", "AWS_ENDPOINT_URL", "http://127.0.0.1:5000"}},
		row{name: "service endpoints", env: []string{"AWS_REGION", "eu-west-1", "AWS_ENDPOINT_URL", "http://shared",
			"AWS_ENDPOINT_URL_SECRETS_MANAGER", "https://sm.vpce.example/", "AWS_ENDPOINT_URL_SSM", "https://ssm.vpce.example", "AWS_ENDPOINT_URL_STS", "https://sts.vpce.example"}},
		row{name: "ignored endpoints", env: []string{"AWS_REGION", "eu-west-1", "AWS_ENDPOINT_URL", "http://127.0.0.1:5000", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"}},
		row{name: "FIPS with an explicit endpoint", env: []string{"AWS_REGION", "us-east-1", "AWS_USE_FIPS_ENDPOINT", "true", "AWS_ENDPOINT_URL", "https://vpce.example"},
			want: []string{"https://vpce.example/", "https://vpce.example/", "https://vpce.example/"}},
		row{name: "profile FIPS", env: []string{"AWS_REGION", "us-gov-east-1"}, profile: "[default]\nuse_fips_endpoint = true\n"},
		row{name: "environment FIPS off beats the profile's", env: []string{"AWS_REGION", "us-east-1", "AWS_USE_FIPS_ENDPOINT", "false"}, profile: "[default]\nuse_fips_endpoint = true\n"},
		row{name: "profile dual-stack", env: []string{"AWS_REGION", "us-east-1"}, profile: "[default]\nuse_dualstack_endpoint = true\n"},
		row{name: "profile region and endpoint_url", profile: "[default]\nregion = ap-south-1\nendpoint_url = https://proxy.example\n"},
		row{name: "profile services section", env: []string{"AWS_REGION", "eu-west-1"},
			profile: "[default]\nservices = mine\n[services mine]\nsecrets_manager =\n  endpoint_url = https://sm.example\nssm =\n  endpoint_url = https://ssm.example\n"},
		row{name: "AWS_ENDPOINT_URL beats the services section", env: []string{"AWS_REGION", "eu-west-1", "AWS_ENDPOINT_URL", "https://env.example"},
			profile: "[default]\nservices = mine\n[services mine]\nssm =\n  endpoint_url = https://ssm.example\n"},
		row{name: "a service variable beats the services section", env: []string{"AWS_REGION", "eu-west-1", "AWS_ENDPOINT_URL_SSM", "https://env-ssm.example"},
			profile: "[default]\nservices = mine\n[services mine]\nssm =\n  endpoint_url = https://ssm.example\n"},
		row{name: "profile ignores configured endpoints", env: []string{"AWS_REGION", "eu-west-1", "AWS_ENDPOINT_URL", "https://env.example"},
			profile: "[default]\nignore_configured_endpoint_urls = true\n"},
	)
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgFile := filepath.Join(dir, "config")
			if err := os.WriteFile(cfgFile, []byte(tt.profile), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SSM",
				"AWS_ENDPOINT_URL_STS", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CA_BUNDLE"} {
				t.Setenv(k, "")
				os.Unsetenv(k) // the SDK tells unset from empty for AWS_ENDPOINT_URL
			}
			env := append([]string{"AWS_CONFIG_FILE", cfgFile, "AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"),
				"AWS_ACCESS_KEY_ID", "AKIAENV", "AWS_SECRET_ACCESS_KEY", "env-secret", "AWS_EC2_METADATA_DISABLED", "true"}, tt.env...)
			for i := 0; i+1 < len(env); i += 2 {
				t.Setenv(env[i], env[i+1])
			}
			sdk, err := awsconfig.LoadDefaultConfig(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == nil {
				sm, ps, st := sdkURLs(t, sdk)
				want = []string{sm, ps, st}
			}
			modes := []string{CredentialsDefault}
			if tt.profile == "" {
				modes = append(modes, CredentialsIMDS) // imds mode reads the environment only
			}
			getenv := func(k string) string {
				if k == "AWS_EC2_METADATA_DISABLED" {
					return "" // imds mode refuses it; the SDK's chain needs it off IMDS
				}
				return os.Getenv(k)
			}
			for _, mode := range modes {
				sm, ps, st := ourURLs(t, mode, getenv)
				if got := []string{sm, ps, st}; strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("%s mode: Secrets Manager, SSM, STS at\n%v\nthe SDK's clients at\n%v", mode, got, want)
				}
			}
		})
	}
}

// fakeIMDS answers the IMDSv2 token PUT and the identity document, and
// records the hosts asked; no network.
type fakeIMDS struct {
	region string
	mu     sync.Mutex
	hosts  []string
}

func (f *fakeIMDS) Do(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.hosts = append(f.hosts, r.URL.Host)
	f.mu.Unlock()
	// GetRegion reads the instance identity document.
	h, body := http.Header{}, `{"region":"`+f.region+`"}`
	if r.Method == http.MethodPut {
		h.Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
		body = "token"
	}
	return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
}

// TestIMDSEndpointAndRegion: the IMDS endpoint follows
// AWS_EC2_METADATA_SERVICE_ENDPOINT(_MODE) as in the SDK, and a region from
// IMDS placement is validated like any other.
func TestIMDSEndpointAndRegion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		env      []string
		region   string
		host     string // asked of IMDS
		errWants []string
	}{
		{"IPv4 default", nil, "eu-west-1", "169.254.169.254", nil},
		{"IPv4 mode", []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4"}, "eu-west-1", "169.254.169.254", nil},
		{"IPv6 mode", []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv6"}, "eu-west-1", "[fd00:ec2::254]", nil},
		{"explicit endpoint wins over the mode", []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338"},
			"eu-west-1", "127.0.0.1:1338", nil},
		{"host from IMDS", nil, "x@evil.example/#", "169.254.169.254", []string{"IMDS placement", "not a region name"}},
		{"ISO region from IMDS", nil, "us-iso-east-1", "169.254.169.254", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(context.Background(), Config{}, Options{Env: envMap(tt.env...)})
			if err != nil {
				t.Fatal(err)
			}
			fake := &fakeIMDS{region: tt.region}
			s.imds.diag.next = fake
			err = s.ready(context.Background())
			if tt.errWants == nil {
				if err != nil {
					t.Fatal(err)
				}
				if s.Region() != tt.region {
					t.Errorf("region %q, want %q", s.Region(), tt.region)
				}
			}
			for _, w := range tt.errWants {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if len(fake.hosts) == 0 {
				t.Fatal("IMDS not asked")
			}
			for _, h := range fake.hosts {
				if h != tt.host {
					t.Errorf("asked %s, want %s", h, tt.host)
				}
			}
			if want := "http://" + tt.host; s.imds.diag.ep() != want {
				t.Errorf("messages name %s, want %s", s.imds.diag.ep(), want)
			}
		})
	}
}
