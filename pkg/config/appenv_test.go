package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestAppEnv: one NAME_FILE per written file, sorted by name after the
// notes (in config order); a note for a secret that expands and for a bundle
// that writes a directory's entries; nothing for input-only secrets.
func TestAppEnv(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := strings.ReplaceAll(`output: {dir: /run/secrets}
secrets:
  - {name: ZED, ref: "file://SRC/a"}
  - {name: DIR, ref: "file://SRC", required: false}
  - {name: ALPHA, ref: "file://SRC/a", file: alpha.txt}
  - {name: TLS_CERT, ref: "file://SRC/a", bundle: tls, file: tls.crt}
  - {name: CERTS, ref: "file://SRC/", bundle: certs}
  - {name: INPUT, ref: "file://SRC/a", write: false}
  - {name: DSN, template: "x{{ secret \"INPUT\" }}"}
`, "SRC", src)
	c, err := Parse("x.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvVar{
		{Note: "DIR expands to one DIR_<KEY>_FILE=/run/secrets/dir_<key> per entry of file://" + src},
		{Note: "CERTS writes each entry of file://" + src + "/ under its own name in /run/secrets/certs/"},
		{Name: "ALPHA_FILE", Path: "/run/secrets/alpha.txt"},
		{Name: "DSN_FILE", Path: "/run/secrets/dsn"},
		{Name: "TLS_CERT_FILE", Path: "/run/secrets/tls/tls.crt"},
		{Name: "ZED_FILE", Path: "/run/secrets/zed"},
	}
	if got := c.AppEnv(); !reflect.DeepEqual(got, want) {
		t.Errorf("AppEnv:\n%+v\nwant:\n%+v", got, want)
	}
}

// TestExpands: the ref's syntax decides, except for a file ref without a
// trailing slash: then the filesystem does, and a missing path is a file.
func TestExpands(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, secret string
		want         bool
	}{
		{"a file", `{name: A, ref: "file://SRC/a"}`, false},
		{"a directory with its slash", `{name: A, ref: "file://SRC/"}`, true},
		{"a directory without its slash", `{name: A, ref: "file://SRC"}`, true},
		{"a path that does not exist", `{name: A, ref: "file://SRC/gone", required: false}`, false},
		{"a directory rendered whole", `{name: A, ref: "file://SRC", format: json}`, false},
		{"a bundle member", `{name: A, ref: "file://SRC", bundle: b}`, false},
		{"a recursive parameter path", `{name: A, ref: "aws-ssm:///app/?recursive=true"}`, true},
		{"one parameter", `{name: A, ref: "aws-ssm:///app/a"}`, false},
		{"a split Vault object", `{name: A, ref: "vault://secret/app?split=true"}`, true},
		{"a Vault field", `{name: A, ref: "vault://secret/app#a"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "output: {dir: /run/secrets}\nsecrets:\n  - " + strings.ReplaceAll(tt.secret, "SRC", src) + "\n" +
				"  - {name: IN, ref: \"file://" + src + "/a\"}\n" +
				"  - {name: T, template: \"{{ secret \\\"IN\\\" }}\"}\n"
			c, err := Parse("x.yaml", []byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := expands(c.Secrets[0]); got != tt.want {
				t.Errorf("expands(%s) = %v, want %v", tt.secret, got, tt.want)
			}
			if expands(c.Secrets[2]) {
				t.Error("a template expands")
			}
		})
	}
}

// TestAppEnvBundleOfDirectory: a bundle reads a directory's entries under
// their own names whether its ref has the trailing slash or not (the file
// source stats the path); a bundle member rendered whole by format is one
// file of the bundle, with its variable.
func TestAppEnvBundleOfDirectory(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "tls.crt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := strings.ReplaceAll(`output: {dir: /run/secrets}
secrets:
  - {name: CERTS, ref: "file://SRC", bundle: certs}
  - {name: CONF, ref: "file://SRC/", bundle: conf, format: json}
`, "SRC", src)
	c, err := Parse("x.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	want := []EnvVar{
		{Note: "CERTS writes each entry of file://" + src + " under its own name in /run/secrets/certs/"},
		{Name: "CONF_FILE", Path: "/run/secrets/conf/conf"},
	}
	if got := c.AppEnv(); !reflect.DeepEqual(got, want) {
		t.Errorf("AppEnv:\n%+v\nwant:\n%+v", got, want)
	}
}
