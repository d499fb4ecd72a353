package aws

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestResolveChain(t *testing.T) {
	t.Parallel()
	staticProfile := "[default]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n"
	refused := func(key, value string) string {
		return "[profile dev]\nregion = eu-west-1\n" + key + " = " + value + "\n"
	}
	tests := []struct {
		name        string
		env         []string
		config      string // AWS_CONFIG_FILE content ("" : no file)
		credentials string // AWS_SHARED_CREDENTIALS_FILE content
		home        map[string]string
		imdsOff     bool
		source      string // want, or "" for an error
		key         string // access key id of a static source
		region      string
		errWants    []string
	}{
		{name: "environment keys", env: []string{"AWS_ACCESS_KEY_ID", "AKIAENV", "AWS_SECRET_ACCESS_KEY", "env-secret"},
			credentials: staticProfile, source: fromEnv, key: "AKIAENV"},
		{name: "environment keys win over an SSO profile", env: []string{"AWS_ACCESS_KEY_ID", "AKIAENV", "AWS_SECRET_ACCESS_KEY", "env-secret", "AWS_PROFILE", "dev"},
			config: refused("sso_start_url", "https://example.awsapps.com/start"), source: fromEnv, key: "AKIAENV", region: "eu-west-1"},
		{name: "half environment keys", env: []string{"AWS_ACCESS_KEY_ID", "AKIAENV"}, errWants: []string{"AWS_SECRET_ACCESS_KEY"}},
		{name: "web identity", env: []string{"AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token", "AWS_ROLE_ARN", roleARN},
			credentials: staticProfile, source: fromWebIdentity},
		{name: "web identity without role", env: []string{"AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"}, errWants: []string{"AWS_ROLE_ARN"}},
		{name: "default profile keys and region", credentials: staticProfile, config: "[default]\nregion = ap-south-1\n",
			source: fromProfile + " default", key: "AKIAPROFILE", region: "ap-south-1"},
		{name: "named profile in the config file", env: []string{"AWS_PROFILE", "dev"},
			config: "[default]\nregion = us-east-1\n[profile dev]\n# comment\nregion = eu-central-1\naws_access_key_id = AKIADEV\naws_secret_access_key = dev-secret\ns3 =\n  max_concurrent_requests = 2\n",
			source: fromProfile + " dev", key: "AKIADEV", region: "eu-central-1"},
		{name: "credentials file overrides config file", env: []string{"AWS_PROFILE", "dev"},
			config: "[profile dev]\naws_access_key_id = AKIACONFIG\naws_secret_access_key = c\n", credentials: "[dev]\naws_access_key_id = AKIACREDS\naws_secret_access_key = s\n",
			source: fromProfile + " dev", key: "AKIACREDS"},
		{name: "files under HOME", home: map[string]string{".aws/credentials": staticProfile, ".aws/config": "[default]\nregion = sa-east-1\n"},
			source: fromProfile + " default", key: "AKIAPROFILE", region: "sa-east-1"},
		{name: "missing named profile", env: []string{"AWS_PROFILE", "nope"}, credentials: staticProfile, errWants: []string{`AWS_PROFILE "nope"`}},
		{name: "half profile keys", credentials: "[default]\naws_access_key_id = AKIA\n", errWants: []string{`profile "default"`, "aws_secret_access_key"}},
		{name: "sso", env: []string{"AWS_PROFILE", "dev"}, config: refused("sso_start_url", "https://example.awsapps.com/start"),
			errWants: []string{`profile "dev"`, "sso_start_url", "AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE", "instance role"}},
		{name: "sso session", env: []string{"AWS_PROFILE", "dev"}, config: refused("sso_session", "corp"), errWants: []string{`profile "dev"`, "sso_session"}},
		{name: "credential process", env: []string{"AWS_PROFILE", "dev"}, config: refused("credential_process", "/usr/bin/creds"),
			errWants: []string{`profile "dev"`, "credential_process"}},
		{name: "role with source profile", env: []string{"AWS_PROFILE", "dev"}, config: refused("role_arn", roleARN) + "source_profile = default\n",
			errWants: []string{`profile "dev"`, "role_arn", "sources.aws.assume_role"}},
		{name: "source profile alone", env: []string{"AWS_PROFILE", "dev"}, config: refused("source_profile", "default"), errWants: []string{"source_profile"}},
		{name: "credential source", env: []string{"AWS_PROFILE", "dev"}, config: refused("credential_source", "Ec2InstanceMetadata"), errWants: []string{"credential_source"}},
		{name: "profile web identity", env: []string{"AWS_PROFILE", "dev"}, config: refused("web_identity_token_file", "/t"), errWants: []string{"web_identity_token_file"}},
		{name: "login", env: []string{"AWS_PROFILE", "dev"}, config: refused("login_session", "arn:aws:iam::1:user/x"), errWants: []string{"login_session"}},
		{name: "container relative", env: []string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x"}, source: fromContainer},
		{name: "container full loopback", env: []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:8080/creds"}, source: fromContainer},
		{name: "container full https", env: []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://creds.example/x"}, source: fromContainer},
		{name: "container full plain http elsewhere", env: []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.1.2.3/creds"},
			errWants: []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "https"}},
		{name: "profile wins over container", credentials: staticProfile, env: []string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/x"},
			source: fromProfile + " default", key: "AKIAPROFILE"},
		{name: "instance role last", config: "[default]\nregion = eu-north-1\n", source: fromIMDS, region: "eu-north-1"},
		{name: "nothing and IMDS disabled", imdsOff: true, errWants: []string{"no credentials found", "AWS_EC2_METADATA_DISABLED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			env := append([]string(nil), tt.env...)
			for name, content := range map[string]string{"AWS_CONFIG_FILE": tt.config, "AWS_SHARED_CREDENTIALS_FILE": tt.credentials} {
				if content != "" {
					f := filepath.Join(dir, name)
					if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
						t.Fatal(err)
					}
					env = append(env, name, f)
				}
			}
			if tt.home != nil {
				for name, content := range tt.home {
					f := filepath.Join(dir, "home", name)
					if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				env = append(env, "HOME", filepath.Join(dir, "home"))
			}
			c, err := resolveChain(context.Background(), envMap(env...), tt.imdsOff)
			if tt.source == "" {
				if err == nil {
					t.Fatalf("chose %q, want an error", c.source)
				}
				for _, w := range tt.errWants {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q: %v", w, err)
					}
				}
				for _, secret := range []string{"env-secret", "profile-secret", "dev-secret"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error carries a secret key: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.source != tt.source || c.region != tt.region {
				t.Errorf("source %q region %q, want %q %q", c.source, c.region, tt.source, tt.region)
			}
			if tt.key != "" {
				got, err := c.static.Retrieve(context.Background())
				if err != nil || got.AccessKeyID != tt.key {
					t.Errorf("key %q (%v), want %q", got.AccessKeyID, err, tt.key)
				}
			}
			if (c.webIdentity != nil) != (tt.source == fromWebIdentity) {
				t.Errorf("web identity %+v for source %q", c.webIdentity, c.source)
			}
		})
	}
}

// TestContainerCredentials: the token file is read on each retrieval and
// sent as the Authorization header; it wins over the plain token.
func TestContainerCredentials(t *testing.T) {
	t.Parallel()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "file-token" || r.URL.Path != "/creds" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId": "AKIACONTAINER", "SecretAccessKey": "s", "Token": "t",
			"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(srv.Close)
	c, err := resolveChain(context.Background(), envMap(
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", srv.URL+"/creds",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "plain-token",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tokenFile,
	), true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.static.Retrieve(context.Background())
	if err != nil || got.AccessKeyID != "AKIACONTAINER" || !got.CanExpire {
		t.Fatalf("%+v %v", got.AccessKeyID, err)
	}
}

func TestReadINIProfile(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "config")
	content := "; comment\n[profile a]\nKey = 1\n[a]\nkey = 2\n[profile  b ]\nkey = 3\n[default]\nkey = d\n"
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		config bool
		want   string
		found  bool
	}{
		{"a", true, "1", true}, {"a", false, "2", true}, {"b", true, "3", true}, {"default", true, "d", true}, {"default", false, "d", true}, {"c", true, "", false},
	} {
		keys, found, err := readINIProfile(f, tt.name, tt.config)
		if err != nil || found != tt.found || keys["key"] != tt.want {
			t.Errorf("%s (config %v): %v %v %v, want %q", tt.name, tt.config, keys, found, err, tt.want)
		}
	}
	if _, found, err := readINIProfile(filepath.Join(t.TempDir(), "none"), "a", true); found || err != nil {
		t.Errorf("missing file: found %v, %v", found, err)
	}
}
