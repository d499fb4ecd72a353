package sources

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in                string
		kind, path, field string
		object            string
		wantErr           string
	}{
		{in: "file:///var/run/k8s/redis/password", kind: File, path: "/var/run/k8s/redis/password", object: "file:///var/run/k8s/redis/password"},
		{in: "file:///var/run/k8s/redis/", kind: File, path: "/var/run/k8s/redis/", object: "file:///var/run/k8s/redis/"},
		{in: "vault://secret/phase/backend#secret_key", kind: Vault, path: "secret/phase/backend", field: "secret_key", object: "vault://secret/phase/backend"},
		{in: "vault://secret/phase/backend?version=3#k", kind: Vault, path: "secret/phase/backend", field: "k", object: "vault://secret/phase/backend?version=3"},
		{in: "vault://database/creds/app", kind: Vault, path: "database/creds/app", object: "vault://database/creds/app"},
		{in: "aws-sm://prod/phase/db#password", kind: AWSSM, path: "prod/phase/db", field: "password", object: "aws-sm://prod/phase/db"},
		{in: "aws-sm://arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf#password", kind: AWSSM, path: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf", field: "password"},
		{in: "aws-sm://prod/db?stage=AWSPREVIOUS", kind: AWSSM, path: "prod/db", object: "aws-sm://prod/db?stage=AWSPREVIOUS"},
		{in: "aws-ssm:///phase/google/client_secret", kind: AWSSSM, path: "/phase/google/client_secret"},
		{in: "aws-ssm:///phase/db?version=2", kind: AWSSSM, path: "/phase/db"},
		{in: "aws-ssm:///phase/?recursive=true", kind: AWSSSM, path: "/phase/"},
		{in: "aws-ssm://plainname", kind: AWSSSM, path: "plainname"},

		{in: "", wantErr: "want SCHEME://"},
		{in: "/etc/passwd", wantErr: "want SCHEME://"},
		{in: "http://x/y", wantErr: `unknown scheme "http"`},
		{in: "file://relative/path", wantErr: "absolute path"},
		{in: "file:///a/../b", wantErr: "not clean"},
		{in: "file:///a#k", wantErr: "no #field"},
		{in: "file:///a?x=1", wantErr: `unknown parameter "x"`},
		{in: "vault://secret", wantErr: "want vault://MOUNT/PATH"},
		{in: "vault:///secret/x", wantErr: "want vault://MOUNT/PATH"},
		{in: "vault://secret/a//b", wantErr: "empty segment"},
		{in: "vault://secret/../sys", wantErr: "not allowed"},
		{in: "vault://secret/x?version=0", wantErr: "positive integer"},
		{in: "vault://secret/x?version=1&version=2", wantErr: "given 2 times"},
		{in: "aws-sm://", wantErr: "want aws-sm://"},
		{in: "aws-sm://x?stage=A&version_id=b", wantErr: "not both"},
		{in: "aws-ssm://", wantErr: "want aws-ssm://"},
		{in: "aws-ssm:///a/?recursive=false", wantErr: "add ?recursive=true"},
		{in: "aws-ssm:///a?recursive=true", wantErr: "ending in /"},
		{in: "aws-ssm:///a?version=1&label=x", wantErr: "not both"},
		{in: "aws-ssm:///a?recursive=maybe", wantErr: "true"},
		{in: "vault://secret/x\x00", wantErr: "NUL"},
		{in: "vault://x/y#", wantErr: "empty #field: give a field name or drop the #"},
		{in: "vault://x/y?version=2#", wantErr: "empty #field"},
		{in: "aws-sm://prod/db#", wantErr: "empty #field"},
		{in: "file:///a#", wantErr: "empty #field"},
		{in: "vault://kv/a#key?version=3", wantErr: "put ?query before #field"},
		{in: "aws-sm://prod/db#password?stage=AWSPREVIOUS", wantErr: "put ?query before #field"},
		{in: "vault://kv/a?version=3#key?", wantErr: "put ?query before #field"},
		{in: "vault://kv/a?version=3#key", kind: Vault, path: "kv/a", field: "key", object: "vault://kv/a?version=3"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRef(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrRef) {
					t.Fatalf("ParseRef(%q) = %v, want an ErrRef containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != tc.kind || r.Path != tc.path || r.Field != tc.field {
				t.Fatalf("ParseRef(%q) = %+v", tc.in, r)
			}
			if tc.object != "" && r.Object() != tc.object {
				t.Errorf("Object() = %q, want %q", r.Object(), tc.object)
			}
			// The canonical form parses back to the same ref.
			again, err := ParseRef(r.String())
			if err != nil || again.Object() != r.Object() || again.Field != r.Field {
				t.Errorf("round trip %q → %q: %+v, %v", tc.in, r.String(), again, err)
			}
		})
	}
}

func TestVaultMountSplit(t *testing.T) {
	r, _ := ParseRef("vault://kv/team/app#x")
	if r.Mount() != "kv" || r.SubPath() != "team/app" {
		t.Fatalf("Mount/SubPath = %q/%q", r.Mount(), r.SubPath())
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"file:///a/b", "file:///dir/", "vault://secret/a#b", "vault://a/b?version=2#c",
		"aws-sm://n#k", "aws-sm://arn:aws:secretsmanager:r:1:secret:n?stage=AWSPREVIOUS",
		"aws-ssm:///p/?recursive=true", "aws-ssm:///p?label=x", "x://", "#?", "file://?#",
		"vault://x/y#", "vault://kv/a#key?version=3", "aws-sm://n#k#l",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if !errors.Is(err, ErrRef) {
				t.Fatalf("error %v does not wrap ErrRef", err)
			}
			return
		}
		again, err := ParseRef(r.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", r.String(), s, err)
		}
		if again.Object() != r.Object() || again.Field != r.Field {
			t.Fatalf("round trip of %q changed the ref: %q vs %q", s, again.String(), r.String())
		}
	})
}

func TestExpands(t *testing.T) {
	for in, want := range map[string]bool{
		"file:///k8s/redis/":                true,
		"file:///k8s/redis/password":        false,
		"aws-ssm:///phase/?recursive=true":  true,
		"aws-ssm:///phase/db":               false,
		"vault://secret/app":                false, // one JSON file
		"vault://secret/app?split=true":     true,
		"vault://secret/app?split=true#k":   false,
		"vault://pki/issue/web":             true,
		"vault://pki/issue/web#certificate": false,
		"vault://pki2/x?common_name=a.test": true,
		"vault://secret/apps/issue/tracker": false, // "issue" is not right after the mount
		"aws-sm://prod/db":                  false,
	} {
		r, err := ParseRef(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Expands(); got != want {
			t.Errorf("%s: Expands = %v, want %v", in, got, want)
		}
	}
}
