package aws

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dirMarker as a file's content makes the test create a directory there,
// which os.ReadFile cannot read (EISDIR), even as root.
const dirMarker = "<directory>"

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
		secret      string // its secret key, when the row is about it
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

		// AWS_DEFAULT_PROFILE, after AWS_PROFILE, as the SDK's env config.
		{name: "AWS_DEFAULT_PROFILE", env: []string{"AWS_DEFAULT_PROFILE", "dev"}, credentials: staticProfile + "[dev]\naws_access_key_id = AKIADEV\naws_secret_access_key = d\n",
			source: fromProfile + " dev", key: "AKIADEV"},
		{name: "AWS_PROFILE wins over AWS_DEFAULT_PROFILE", env: []string{"AWS_PROFILE", "default", "AWS_DEFAULT_PROFILE", "dev"},
			credentials: staticProfile + "[dev]\naws_access_key_id = AKIADEV\naws_secret_access_key = d\n", source: fromProfile + " default", key: "AKIAPROFILE"},
		{name: "missing AWS_DEFAULT_PROFILE", env: []string{"AWS_DEFAULT_PROFILE", "nope"}, credentials: staticProfile, errWants: []string{`AWS_DEFAULT_PROFILE "nope"`, "unset AWS_DEFAULT_PROFILE"}},

		// The profile is the third step: what is wrong with it does not
		// stop the two before it.
		{name: "missing profile, no files, environment keys", env: []string{"AWS_PROFILE", "nope", "AWS_ACCESS_KEY_ID", "AKIAENV", "AWS_SECRET_ACCESS_KEY", "env-secret"},
			source: fromEnv, key: "AKIAENV"},
		{name: "missing profile, no files, web identity", env: []string{"AWS_PROFILE", "nope", "AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token", "AWS_ROLE_ARN", roleARN},
			source: fromWebIdentity},
		{name: "missing profile, no files", env: []string{"AWS_PROFILE", "nope"}, errWants: []string{`AWS_PROFILE "nope"`}},
		{name: "HOME is not a directory, environment keys", env: []string{"HOME", "/dev/null", "AWS_ACCESS_KEY_ID", "AKIAENV", "AWS_SECRET_ACCESS_KEY", "env-secret"},
			source: fromEnv, key: "AKIAENV"},
		{name: "HOME is not a directory", env: []string{"HOME", "/dev/null"}, source: fromIMDS},
		{name: "unreadable default config skipped", home: map[string]string{".aws/config": dirMarker, ".aws/credentials": staticProfile},
			source: fromProfile + " default", key: "AKIAPROFILE"},
		{name: "unreadable default file named when the profile is missing", env: []string{"AWS_PROFILE", "dev"}, home: map[string]string{".aws/config": dirMarker},
			errWants: []string{`AWS_PROFILE "dev"`, "skipped", ".aws/config"}},
		{name: "unreadable AWS_CONFIG_FILE", env: []string{"AWS_CONFIG_FILE", "/dev/null/config", "AWS_ACCESS_KEY_ID", "AKIAENV", "AWS_SECRET_ACCESS_KEY", "env-secret"},
			errWants: []string{"AWS_CONFIG_FILE", "/dev/null/config", "unset AWS_CONFIG_FILE"}},
		{name: "missing AWS_SHARED_CREDENTIALS_FILE is an empty file", env: []string{"AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"}, source: fromIMDS},

		// The shared files are read by the SDK's rules (internal/ini); each
		// row's outcome was checked against config.LoadSharedConfigProfile.
		{name: "indented keys are keys", credentials: "[default]\n  aws_access_key_id = AKIAINDENT\n  aws_secret_access_key = indent-secret\n",
			source: fromProfile + " default", key: "AKIAINDENT", secret: "indent-secret"},
		{name: "indented sso_start_url is refused", env: []string{"AWS_PROFILE", "dev"}, config: "[profile dev]\nregion = eu-west-1\n  sso_start_url = https://example.awsapps.com/start\n",
			errWants: []string{`profile "dev"`, "sso_start_url", "line 3"}},
		{name: "sub-property of an empty key is not a key", env: []string{"AWS_PROFILE", "dev"},
			config: "[profile dev]\ns3 =\n  sso_start_url = https://example.awsapps.com/start\naws_access_key_id = AKIADEV\naws_secret_access_key = d\n",
			source: fromProfile + " dev", key: "AKIADEV"},
		{name: "header with a comment", config: "[default] ; main\nregion = eu-west-3\n[profile dev] # other\nregion = us-east-2\n", credentials: staticProfile,
			source: fromProfile + " default", key: "AKIAPROFILE", region: "eu-west-3"},
		{name: "colon assignment", credentials: "[default]\naws_access_key_id: AKIACOLON\naws_secret_access_key: a=b\n",
			source: fromProfile + " default", key: "AKIACOLON", secret: "a=b"},
		{name: "inline comments", credentials: "[default]\naws_access_key_id = AKIACOMMENT # old: AKIAOLD\naws_secret_access_key = s;t ;comment\n", config: "[default]\nregion = eu-west-1\t; home\n",
			source: fromProfile + " default", key: "AKIACOMMENT", secret: "s;t", region: "eu-west-1"},
		{name: "quotes", credentials: "[default]\naws_access_key_id = \"AKIAQUOTED\"\naws_secret_access_key = 'q s'\n", config: "[default]\nregion = \"ca-central-1\"\n",
			source: fromProfile + " default", key: "AKIAQUOTED", secret: "q s", region: "ca-central-1"},
		{name: "upper-case keys, CRLF", credentials: "[default]\r\nAWS_ACCESS_KEY_ID = AKIACRLF\r\nAws_Secret_Access_Key = crlf\r\n",
			source: fromProfile + " default", key: "AKIACRLF", secret: "crlf"},
		{name: "[profile default] replaces [default]", config: "[default]\naws_access_key_id = AKIAPLAIN\naws_secret_access_key = p\nregion = eu-west-1\n[profile default]\nregion = us-west-2\n",
			source: fromIMDS, region: "us-west-2"},
		{name: "tab after profile", env: []string{"AWS_PROFILE", "dev"}, config: "[profile\tdev]\naws_access_key_id = AKIATAB\naws_secret_access_key = t\n",
			source: fromProfile + " dev", key: "AKIATAB"},
		{name: "config section without the profile prefix is ignored", env: []string{"AWS_PROFILE", "dev"}, config: "[dev]\nregion = eu-west-1\n",
			errWants: []string{`AWS_PROFILE "dev"`}},
		{name: "credentials section with the profile prefix is ignored", env: []string{"AWS_PROFILE", "dev"}, credentials: "[profile dev]\naws_access_key_id = AKIA\naws_secret_access_key = x\n",
			errWants: []string{`AWS_PROFILE "dev"`}},
		{name: "header with a comment character inside is not a header", credentials: "[default]\naws_access_key_id = AKIAFIRST\naws_secret_access_key = f\n[dev#1]\naws_access_key_id = AKIASECOND\naws_secret_access_key = s\n",
			source: fromProfile + " default", key: "AKIASECOND"},
		{name: "later key wins, sections merge", credentials: "[default]\naws_access_key_id = AKIAONE\naws_secret_access_key = 1\n[default]\naws_access_key_id = AKIATWO\n",
			source: fromProfile + " default", key: "AKIATWO", secret: "1"},
		{name: "continuation line", credentials: "[default]\naws_access_key_id = AKIA\n  CONT\naws_secret_access_key = c\n",
			source: fromProfile + " default", key: "AKIA\nCONT"},
		{name: "half pair in the credentials file wins over the config file's", config: "[default]\naws_access_key_id = AKIACONF\naws_secret_access_key = c\n",
			credentials: "[default]\naws_access_key_id = AKIACRED\n", errWants: []string{`profile "default"`, "only one of"}},
		{name: "full pair in the credentials file clears the config file's half", config: "[default]\naws_access_key_id = AKIACONF\n",
			credentials: "[default]\naws_access_key_id = AKIACRED\naws_secret_access_key = c\n", source: fromProfile + " default", key: "AKIACRED"},
		{name: "empty key pair is no keys", credentials: "[default]\naws_access_key_id =\naws_secret_access_key =\n", source: fromIMDS},
		{name: "present but empty half is half", credentials: "[default]\naws_access_key_id =\n", errWants: []string{"only one of"}},
		{name: "token without the pair is not merged", config: "[default]\naws_access_key_id = AKIACONF\naws_secret_access_key = c\n",
			credentials: "[default]\naws_session_token = t\nregion = eu-south-1\n", source: fromProfile + " default", key: "AKIACONF", region: "eu-south-1"},
		{name: "lone quote", credentials: "[default]\naws_access_key_id = \"\naws_secret_access_key = c\n", errWants: []string{"line 2", "aws_access_key_id", "lone quote"}},
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
					if content == dirMarker {
						if err := os.Mkdir(f, 0o700); err != nil {
							t.Fatal(err)
						}
						continue
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
				if err != nil || got.AccessKeyID != tt.key || tt.secret != "" && got.SecretAccessKey != tt.secret {
					t.Errorf("key %q secret %q (%v), want %q %q", got.AccessKeyID, got.SecretAccessKey, err, tt.key, tt.secret)
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

func TestParseINISections(t *testing.T) {
	t.Parallel()
	content := "; comment\nglobal = ignored\n[profile a]\nKey = 1\n[a]\nkey = 2\n[profile  b ]\nkey = 3\n[default]\nkey = d\n[sso-session s]\nkey = s\n[services x]\nkey = x\n[default extra]\nkey = e\n"
	for _, tt := range []struct {
		config bool
		want   map[string]string // section -> its key
	}{
		{true, map[string]string{"a": "1", "b": "3", "default": "d", "sso-session s": "s", "services x": "x"}},
		{false, map[string]string{"a": "2", "default": "d", "sso-session s": "s", "services x": "x", "default extra": "e"}},
	} {
		sections, err := parseINI("f", content)
		if err != nil {
			t.Fatal(err)
		}
		if tt.config {
			configProfiles(sections)
		} else {
			credentialsProfiles(sections)
		}
		got := map[string]string{}
		for name, s := range sections {
			got[name] = s.values["key"].str
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("config %v: %v, want %v", tt.config, got, tt.want)
		}
	}
}

// TestContainerURIChecks: plain http only to loopback and the ECS/EKS hosts,
// and a refused URI never echoes a password it carries.
func TestContainerURIChecks(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		uri, want string
	}{
		{"http://127.0.0.1:8080/creds", ""},
		{"http://169.254.170.23/v1/credentials", ""},
		{"https://creds.example/v1", ""},
		{"http://user:hunter2@10.0.0.1/creds", "plain http is allowed only to loopback"},
		{"http://user:hunter2@%zz/creds", "is not a URL with a host"},
		{"not a url", "is not a URL with a host"},
	} {
		err := checkContainerURI(context.Background(), tt.uri)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.uri, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: err = %v, want %q", tt.uri, err, tt.want)
		case err != nil && strings.Contains(err.Error(), "hunter2"):
			t.Errorf("%s: the error shows the password: %v", tt.uri, err)
		}
	}
}
