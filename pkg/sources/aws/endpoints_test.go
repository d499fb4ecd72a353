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

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
)

// TestNewRefuses: New refuses regions that are not region names or that
// need endpoints it does not derive, and the SDK endpoint settings it does
// not implement, unless explicit endpoints make them moot.
func TestNewRefuses(t *testing.T) {
	t.Parallel()
	envKeys := []string{"AWS_ACCESS_KEY_ID", "AKIAENV", "AWS_SECRET_ACCESS_KEY", "env-secret"}
	withKeys := func(kv ...string) []string { return append(append([]string(nil), envKeys...), kv...) }
	assume := &config.AssumeRole{RoleARN: roleARN}
	tests := []struct {
		name     string
		cfg      config.AWS // Credentials "" means imds
		env      []string
		profile  string // AWS_CONFIG_FILE content; sets credentials: default
		errWants []string
	}{
		{name: "commercial", cfg: config.AWS{Region: "eu-west-1"}},
		{name: "china", env: []string{"AWS_REGION", "cn-northwest-1"}},
		{name: "GovCloud", env: []string{"AWS_DEFAULT_REGION", "us-gov-west-1"}},
		{name: "host in AWS_REGION", env: []string{"AWS_REGION", "x@evil.example/#"}, errWants: []string{`"x@evil.example/#"`, "AWS_REGION", "not a region name"}},
		{name: "host in AWS_DEFAULT_REGION", env: []string{"AWS_DEFAULT_REGION", "evil.example"}, errWants: []string{"AWS_DEFAULT_REGION", "not a region name"}},
		{name: "host in sources.aws.region", cfg: config.AWS{Region: "eu-west-1.evil.example#"}, errWants: []string{"sources.aws.region"}},
		{name: "host in the profile's region", env: envKeys, profile: "[default]\nregion = evil.example/\n",
			errWants: []string{`shared profile "default"`, "line 2", "not a region name"}},
		{name: "AWS_REGION wins over the profile's", env: withKeys("AWS_REGION", "eu-west-2"), profile: "[default]\nregion = evil.example/\n"},
		{name: "ISO partition", env: []string{"AWS_REGION", "us-iso-east-1"}, errWants: []string{"aws-iso partition", "AWS_ENDPOINT_URL_SECRETS_MANAGER and AWS_ENDPOINT_URL_SSM"}},
		{name: "ISO-B partition", env: []string{"AWS_REGION", "us-isob-east-1"}, errWants: []string{"aws-iso-b"}},
		{name: "ISO-E partition", env: []string{"AWS_REGION", "eu-isoe-west-1"}, errWants: []string{"aws-iso-e"}},
		{name: "ISO-F partition", env: []string{"AWS_REGION", "us-isof-south-1"}, errWants: []string{"aws-iso-f"}},
		{name: "European sovereign cloud", env: []string{"AWS_REGION", "eusc-de-east-1"}, errWants: []string{"aws-eusc"}},
		{name: "ISO with one endpoint", env: []string{"AWS_REGION", "us-iso-east-1", "AWS_ENDPOINT_URL_SSM", "https://ssm.example"}, errWants: []string{"set AWS_ENDPOINT_URL_SECRETS_MANAGER to"}},
		{name: "ISO with endpoints", env: []string{"AWS_REGION", "us-iso-east-1", "AWS_ENDPOINT_URL", "https://vpce.example"}},

		{name: "FIPS", cfg: config.AWS{Region: "us-east-1"}, env: []string{"AWS_USE_FIPS_ENDPOINT", "true"},
			errWants: []string{"AWS_USE_FIPS_ENDPOINT=true", "FIPS endpoints", "AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL_SSM", "turn the setting off"}},
		{name: "FIPS upper case", cfg: config.AWS{Region: "us-east-1"}, env: []string{"AWS_USE_FIPS_ENDPOINT", "TRUE"}, errWants: []string{"FIPS endpoints"}},
		{name: "FIPS off", cfg: config.AWS{Region: "us-east-1"}, env: []string{"AWS_USE_FIPS_ENDPOINT", "false"}},
		{name: "FIPS not a boolean", cfg: config.AWS{Region: "us-east-1"}, env: []string{"AWS_USE_FIPS_ENDPOINT", "yes"}, errWants: []string{"AWS_USE_FIPS_ENDPOINT", "want true or false"}},
		{name: "FIPS with explicit endpoints", cfg: config.AWS{Region: "us-east-1"},
			env: []string{"AWS_USE_FIPS_ENDPOINT", "true", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "https://secretsmanager-fips.us-east-1.amazonaws.com", "AWS_ENDPOINT_URL_SSM", "https://ssm-fips.us-east-1.amazonaws.com"}},
		{name: "FIPS with assume_role needs STS too", cfg: config.AWS{Region: "us-east-1", AssumeRole: assume},
			env:      []string{"AWS_USE_FIPS_ENDPOINT", "true", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "https://sm.example", "AWS_ENDPOINT_URL_SSM", "https://ssm.example"},
			errWants: []string{"set AWS_ENDPOINT_URL_STS to"}},
		{name: "FIPS with web identity needs STS too", cfg: config.AWS{Region: "us-east-1", Credentials: CredentialsDefault},
			env:      []string{"AWS_USE_FIPS_ENDPOINT", "true", "AWS_WEB_IDENTITY_TOKEN_FILE", "/t", "AWS_ROLE_ARN", roleARN, "AWS_ENDPOINT_URL_SECRETS_MANAGER", "https://sm.example", "AWS_ENDPOINT_URL_SSM", "https://ssm.example"},
			errWants: []string{"AWS_ENDPOINT_URL_STS"}},
		{name: "dual-stack", cfg: config.AWS{Region: "us-east-1"}, env: []string{"AWS_USE_DUALSTACK_ENDPOINT", "true"}, errWants: []string{"AWS_USE_DUALSTACK_ENDPOINT=true", "dual-stack"}},
		{name: "dual-stack with AWS_ENDPOINT_URL", cfg: config.AWS{Region: "us-east-1"}, env: []string{"AWS_USE_DUALSTACK_ENDPOINT", "true", "AWS_ENDPOINT_URL", "https://vpce.example"}},
		{name: "profile FIPS", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[default]\nuse_fips_endpoint = True\n",
			errWants: []string{`profile "default" sets use_fips_endpoint = True`, "line 2", "FIPS endpoints"}},
		{name: "profile FIPS off by the environment", cfg: config.AWS{Region: "us-east-1"}, env: withKeys("AWS_USE_FIPS_ENDPOINT", "false"), profile: "[default]\nuse_fips_endpoint = true\n"},
		{name: "profile FIPS not true is false", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[default]\nuse_fips_endpoint = yes\n"},
		{name: "profile dual-stack", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[default]\nuse_dualstack_endpoint = true\n", errWants: []string{"use_dualstack_endpoint"}},
		{name: "profile dual-stack with endpoints", cfg: config.AWS{Region: "us-east-1"}, env: withKeys("AWS_ENDPOINT_URL", "https://vpce.example"),
			profile: "[default]\nuse_dualstack_endpoint = true\n"},
		{name: "profile endpoint_url", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[default]\nendpoint_url = https://proxy.example\n",
			errWants: []string{`profile "default" sets endpoint_url`, "line 2", "AWS_ENDPOINT_URL"}},
		{name: "profile services", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[default]\nservices = mine\n[services mine]\nsecretsmanager =\n  endpoint_url = https://x\n",
			errWants: []string{"services", "AWS_ENDPOINT_URL_SECRETS_MANAGER"}},
		{name: "profile ca_bundle", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[default]\nca_bundle = /etc/ca.pem\n", errWants: []string{"ca_bundle", "AWS_CA_BUNDLE"}},
		{name: "profile IMDS endpoint", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[default]\nec2_metadata_service_endpoint = http://10.0.0.1\n",
			errWants: []string{"ec2_metadata_service_endpoint", "AWS_EC2_METADATA_SERVICE_ENDPOINT"}},
		{name: "profile IMDS endpoint mode", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[default]\nec2_metadata_service_endpoint_mode = IPv6\n",
			errWants: []string{"ec2_metadata_service_endpoint_mode", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"}},
		{name: "profile of another name is not read", cfg: config.AWS{Region: "us-east-1"}, env: envKeys, profile: "[profile other]\nendpoint_url = https://proxy.example\n"},
		{name: "ignore configured endpoints", cfg: config.AWS{Region: "us-east-1"}, env: []string{"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", "AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:5000"},
			errWants: []string{"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "unset either"}},
		{name: "ignore configured endpoints without any", cfg: config.AWS{Region: "us-east-1"}, env: []string{"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"}},
		{name: "IMDS endpoint mode", env: []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv5"}, errWants: []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "want IPv4 or IPv6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := append([]string(nil), tt.env...)
			cfg := tt.cfg
			if tt.profile != "" {
				f := filepath.Join(t.TempDir(), "config")
				if err := os.WriteFile(f, []byte(tt.profile), 0o600); err != nil {
					t.Fatal(err)
				}
				env = append(env, "AWS_CONFIG_FILE", f)
				cfg.Credentials = CredentialsDefault
			}
			_, err := New(context.Background(), cfg, Options{Env: envMap(env...)})
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
			if strings.Contains(err.Error(), "env-secret") {
				t.Errorf("error carries the secret key: %v", err)
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
		{"ISO region from IMDS", nil, "us-iso-east-1", "169.254.169.254", []string{"IMDS placement", "aws-iso"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(context.Background(), config.AWS{}, Options{Env: envMap(tt.env...)})
			if err != nil {
				t.Fatal(err)
			}
			fake := &fakeIMDS{region: tt.region}
			s.diag.next = fake
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
			if want := "http://" + tt.host; s.diag.ep() != want {
				t.Errorf("messages name %s, want %s", s.diag.ep(), want)
			}
		})
	}
}
