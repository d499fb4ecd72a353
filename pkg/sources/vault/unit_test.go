package vault

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

func TestClassify(t *testing.T) {
	resp := func(code int, msgs ...string) error {
		return &api.ResponseError{HTTPMethod: "GET", URL: "http://v/v1/x", StatusCode: code, Errors: msgs}
	}
	tests := []struct {
		name string
		err  error
		want error
		text string
	}{
		{"403", resp(403, "permission denied"), sources.ErrPermission, "policies"},
		{"404", resp(404), sources.ErrNotFound, `"secret/app"`},
		{"429", resp(429, "request path \"secret/app\": rate limit quota exceeded"), sources.ErrThrottled, "rate limit"},
		{"sealed", resp(503, "Vault is sealed"), sources.ErrUnavailable, "Vault is sealed"},
		{"412", resp(412), sources.ErrUnavailable, "412"},
		{"500", resp(500, "internal error"), sources.ErrUnavailable, "internal error"},
		{"unknown CA", &url.Error{Op: "Get", URL: "https://v", Err: x509.UnknownAuthorityError{}}, sources.ErrUnavailable, "ca_cert"},
		{"hostname", &url.Error{Op: "Get", URL: "https://v", Err: x509.HostnameError{Host: "10.0.0.1", Certificate: &x509.Certificate{}}}, sources.ErrUnavailable, "tls_server_name"},
		{"refused", &url.Error{Op: "Get", URL: "http://v", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, sources.ErrUnavailable, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify("read", "secret/app", tt.err)
			if !errors.Is(err, tt.want) {
				t.Errorf("classify = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) || !strings.HasPrefix(err.Error(), `vault: read "secret/app"`) {
				t.Errorf("classify = %q, want it to start with the path and mention %q", err, tt.text)
			}
			if got := sources.Reason(err); got == "other" {
				t.Errorf("Reason = other")
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n < 20; n++ {
		d := backoffAfter(n)
		ceil := min(500*time.Millisecond<<min(n-1, 7), time.Minute)
		if d < ceil/2 || d > ceil {
			t.Errorf("backoffAfter(%d) = %v, want within [%v, %v]", n, d, ceil/2, ceil)
		}
	}
}

func TestObjectOf(t *testing.T) {
	data := map[string]any{"s": "text", "n": 1.5, "b": true, "l": []any{"x"}, "o": map[string]any{"k": "v"}, "z": nil}
	obj, err := objectOf(sources.Ref{Path: "secret/app"}, data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"s": "text", "n": "1.5", "b": "true", "l": `["x"]`, "o": `{"k":"v"}`, "z": "null"}
	for k, w := range want {
		if got := string(obj.Fields[k].Reveal()); got != w {
			t.Errorf("field %s = %q, want %q", k, got, w)
		}
	}
	if got := string(obj.Value.Reveal()); got != `{"b":true,"l":["x"],"n":1.5,"o":{"k":"v"},"s":"text","z":null}` {
		t.Errorf("Value = %s", got)
	}
	if fmt.Sprint(obj) == "" || strings.Contains(fmt.Sprintf("%v %+v", obj, obj), "text") {
		t.Error("printing an object shows a value")
	}
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		text string
	}{
		{"no address", Config{}, "VAULT_ADDR"},
		{"unknown method", Config{Address: "http://v", Auth: Auth{Method: "ldap"}}, "unknown auth method"},
		{"aws without credentials", Config{Address: "http://v", Auth: Auth{Method: "aws", Role: "r"}}, "AWS credentials"},
		{"missing CA file", Config{Address: "https://v", CACert: "/nonexistent/ca.pem"}, "ca_cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("New: err = %v, want it to mention %q", err, tt.text)
			}
		})
	}
}

// TestNewTakesNoTokenFromTheEnvironment: the API client reads VAULT_TOKEN
// from the process environment; the source clears it and decides itself.
func TestNewTakesNoTokenFromTheEnvironment(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "s3cr3t-canary-env-token")
	s, err := New(Config{Address: "http://127.0.0.1:1", Namespace: "team-a"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.client.Address() != "http://127.0.0.1:1" || s.client.Namespace() != "team-a" {
		t.Errorf("address %q, namespace %q", s.client.Address(), s.client.Namespace())
	}
	if s.client.Token() != "" {
		t.Error("New took a token from the process environment")
	}
}

// TestSTSTarget: the aws login is addressed and signed as configured; a
// region alone picks its partition's regional endpoint, the one the SDK's
// STS endpoint resolver gives for it.
func TestSTSTarget(t *testing.T) {
	tests := []struct {
		auth             Auth
		endpoint, region string
		sdkRegional      bool
	}{
		{Auth{}, "https://sts.amazonaws.com/", "us-east-1", false},
		{Auth{STSRegion: "eu-west-1"}, "https://sts.eu-west-1.amazonaws.com/", "eu-west-1", true},
		{Auth{STSRegion: "us-east-1"}, "https://sts.us-east-1.amazonaws.com/", "us-east-1", true},
		{Auth{STSRegion: "us-gov-west-1"}, "https://sts.us-gov-west-1.amazonaws.com/", "us-gov-west-1", true},
		{Auth{STSRegion: "cn-north-1"}, "https://sts.cn-north-1.amazonaws.com.cn/", "cn-north-1", true},
		{Auth{STSRegion: "cn-future-3"}, "https://sts.cn-future-3.amazonaws.com.cn/", "cn-future-3", true},
		{Auth{STSRegion: "us-isob-east-1"}, "https://sts.us-isob-east-1.sc2s.sgov.gov/", "us-isob-east-1", true},
		{Auth{STSRegion: "eusc-de-east-1"}, "https://sts.eusc-de-east-1.amazonaws.eu/", "eusc-de-east-1", true},
		{Auth{STSRegion: "ap-future-7"}, "https://sts.ap-future-7.amazonaws.com/", "ap-future-7", true},
		{Auth{STSRegion: "eu-west-1", STSEndpoint: "https://vpce-0a1b.sts.eu-west-1.vpce.amazonaws.com"},
			"https://vpce-0a1b.sts.eu-west-1.vpce.amazonaws.com/", "eu-west-1", false},
		{Auth{STSRegion: "us-gov-east-1", STSEndpoint: "https://sts.us-gov-east-1.amazonaws.com/"},
			"https://sts.us-gov-east-1.amazonaws.com/", "us-gov-east-1", false},
		{Auth{STSEndpoint: "http://127.0.0.1:4566"}, "http://127.0.0.1:4566/", "us-east-1", false},
	}
	resolver := sts.NewDefaultEndpointResolverV2()
	for _, tt := range tests {
		endpoint, region := tt.auth.stsTarget()
		if endpoint != tt.endpoint || region != tt.region {
			t.Errorf("%+v: %s signed for %s, want %s for %s", tt.auth, endpoint, region, tt.endpoint, tt.region)
		}
		if !tt.sdkRegional {
			continue
		}
		sdk, err := resolver.ResolveEndpoint(context.Background(), sts.EndpointParameters{
			Region: aws.String(tt.auth.STSRegion), UseGlobalEndpoint: aws.Bool(false), UseFIPS: aws.Bool(false), UseDualStack: aws.Bool(false),
		})
		if err != nil {
			t.Errorf("the SDK refuses %s: %v", tt.auth.STSRegion, err)
		} else if want := sdk.URI.String() + "/"; endpoint != want {
			t.Errorf("%s: %s, the SDK %s", tt.auth.STSRegion, endpoint, want)
		}
	}
}
