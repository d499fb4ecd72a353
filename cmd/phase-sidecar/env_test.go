package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnvOutput pins env's three formats byte for byte: the variables
// sorted by name after the notes, quoting, bundle members, the notes for
// secrets whose files are named only after a fetch (a directory ref with or
// without its slash, a recursive parameter path, a bundle reading a
// directory), and nothing for input-only secrets.
func TestEnvOutput(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "phase-sidecar.yaml")
	yaml := strings.ReplaceAll(`output: {dir: "/run/it's secrets"}
secrets:
  - {name: ZED, ref: "file://SRC/a"}
  - {name: DIR, ref: "file://SRC", required: false}
  - {name: ALPHA, ref: "file://SRC/a", file: alpha.txt}
  - {name: SLASHED, ref: "file://SRC/", required: false}
  - {name: GONE, ref: "file://SRC/gone", required: false}
  - {name: TLS_CERT, ref: "file://SRC/a", bundle: tls, file: tls.crt}
  - {name: CERTS, ref: "file://SRC/", bundle: certs}
  - {name: PARAMS, ref: "aws-ssm:///app/?recursive=true"}
  - {name: INPUT, ref: "file://SRC/a", write: false}
  - {name: DSN, template: "x{{ secret \"INPUT\" }}"}
`, "SRC", src)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	const dir = "/run/it's secrets"
	notes := func(comment string) string {
		return comment + "DIR expands to one DIR_<KEY>_FILE=" + dir + "/dir_<key> per entry of file://" + src + "\n" +
			comment + "SLASHED expands to one SLASHED_<KEY>_FILE=" + dir + "/slashed_<key> per entry of file://" + src + "/\n" +
			comment + "CERTS writes each entry of file://" + src + "/ under its own name in " + dir + "/certs/\n" +
			comment + "PARAMS expands to one PARAMS_<KEY>_FILE=" + dir + "/params_<key> per entry of aws-ssm:///app/?recursive=true\n"
	}
	tests := map[string]string{
		"shell": notes("# ") +
			`ALPHA_FILE='/run/it'\''s secrets/alpha.txt'` + "\n" +
			`DSN_FILE='/run/it'\''s secrets/dsn'` + "\n" +
			`GONE_FILE='/run/it'\''s secrets/gone'` + "\n" +
			`TLS_CERT_FILE='/run/it'\''s secrets/tls/tls.crt'` + "\n" +
			`ZED_FILE='/run/it'\''s secrets/zed'` + "\n",
		"k8s": "env:\n" + notes("  # ") +
			"  - name: ALPHA_FILE\n    value: \"/run/it's secrets/alpha.txt\"\n" +
			"  - name: DSN_FILE\n    value: \"/run/it's secrets/dsn\"\n" +
			"  - name: GONE_FILE\n    value: \"/run/it's secrets/gone\"\n" +
			"  - name: TLS_CERT_FILE\n    value: \"/run/it's secrets/tls/tls.crt\"\n" +
			"  - name: ZED_FILE\n    value: \"/run/it's secrets/zed\"\n",
		"compose": "environment:\n" + notes("  # ") +
			"  ALPHA_FILE: \"/run/it's secrets/alpha.txt\"\n" +
			"  DSN_FILE: \"/run/it's secrets/dsn\"\n" +
			"  GONE_FILE: \"/run/it's secrets/gone\"\n" +
			"  TLS_CERT_FILE: \"/run/it's secrets/tls/tls.crt\"\n" +
			"  ZED_FILE: \"/run/it's secrets/zed\"\n",
	}
	for format, want := range tests {
		t.Run(format, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := cmdEnv([]string{"--config", cfg, "--format", format}, &stdout, &stderr); err != nil {
				t.Fatalf("env: %v\n%s", err, stderr.String())
			}
			if got := stdout.String(); got != want {
				t.Errorf("env --format %s:\n%s\nwant:\n%s", format, got, want)
			}
		})
	}
	t.Run("unknown format", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := cmdEnv([]string{"--config", cfg, "--format", "toml"}, &stdout, &stderr)
		if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), `--format "toml"`) || stdout.Len() != 0 {
			t.Errorf("env --format toml = %v, %q", err, stdout.String())
		}
	})
}

// TestEnvOutputDollar: Kubernetes expands $(VAR) in an env value and
// Compose $VAR and ${VAR} anywhere in the file, both reading $$ as one $:
// a path with a $ is printed with $$ there, and as it is (quoted) for the
// shell.
func TestEnvOutputDollar(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "phase-sidecar.yaml")
	yaml := "output: {dir: /run/secrets}\nsecrets:\n  - {name: PW, ref: \"file://" + src + "/a\", file: \"pa$(HOME)$$word\"}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"shell":   "PW_FILE='/run/secrets/pa$(HOME)$$word'\n",
		"k8s":     "env:\n  - name: PW_FILE\n    value: \"/run/secrets/pa$$(HOME)$$$$word\"\n",
		"compose": "environment:\n  PW_FILE: \"/run/secrets/pa$$(HOME)$$$$word\"\n",
	}
	for format, want := range tests {
		t.Run(format, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := cmdEnv([]string{"--config", cfg, "--format", format}, &stdout, &stderr); err != nil {
				t.Fatalf("env: %v\n%s", err, stderr.String())
			}
			if got := stdout.String(); got != want {
				t.Errorf("env --format %s:\n%s\nwant:\n%s", format, got, want)
			}
		})
	}
}
