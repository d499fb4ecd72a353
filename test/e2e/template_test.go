package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"go.yaml.in/yaml/v4"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// The template tests hand what the sidecar renders to the programs that
// read it in production: psql reads a DATABASE_URL and a .pgpass built
// from a PostgreSQL lease of Vault's database engine, sh sources a dotenv
// file and Phase's database env file, python parses a JSON file and runs a
// Django settings fragment, and nginx serves a certificate through a config
// rendered from a template file, reloading when either changes. One Vault
// dev server serves every subtest; the sidecar logs in with AppRole.

// TestTemplates runs the real consumers of rendered files.
func TestTemplates(t *testing.T) {
	for _, k := range []string{"VAULT_ADDR", "VAULT_TOKEN", "VAULT_CACERT", "VAULT_NAMESPACE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	v := startVault(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *vaultServer)
	}{
		{"DatabaseLease", testTemplateDatabase},
		{"Dotenv", testTemplateDotenv},
		{"JSONAndPython", testTemplateJSON},
		{"NginxConfigAndCertificate", testTemplateNginx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, v)
		})
	}
}

// urlHostilePolicy is a Vault password policy whose passwords hold every
// character with a meaning in a URL's userinfo (@ : / ? # %), in a .pgpass
// line (: \) and in a shell ($ ` " \), so that a template that forgets to
// encode one breaks the login. No single quote (Vault puts the password
// into the SQL string '{{password}}') and no space (Phase strips the
// password file's surrounding whitespace).
const urlHostilePolicy = `
length = 32
rule "charset" {
  charset   = "abcdefghijklmnopqrstuvwxyz"
  min-chars = 2
}
rule "charset" {
  charset   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
  min-chars = 2
}
rule "charset" {
  charset   = "@"
  min-chars = 1
}
rule "charset" {
  charset   = ":"
  min-chars = 1
}
rule "charset" {
  charset   = "/"
  min-chars = 1
}
rule "charset" {
  charset   = "?"
  min-chars = 1
}
rule "charset" {
  charset   = "#"
  min-chars = 1
}
rule "charset" {
  charset   = "%"
  min-chars = 1
}
rule "charset" {
  charset   = "\\"
  min-chars = 1
}
rule "charset" {
  charset   = "&+=[]\"$,;!*^` + "`" + `~"
  min-chars = 3
}
`

// The characters every generated password holds at least once.
const urlHostileRequired = `@:/?#%\`

// tmplDatabase is a PostgreSQL server behind Vault's database engine,
// whose role phase issues leases of a few seconds with passwords of
// urlHostilePolicy.
type tmplDatabase struct {
	pg   *servers.PostgresServer
	psql string // psql, beside the server binary
}

func startTmplDatabase(t *testing.T, v *vaultServer, defaultTTL, maxTTL string) *tmplDatabase {
	t.Helper()
	pg := servers.Postgres(t, t.TempDir(), "phase_admin", "tmpl-pg-admin")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, name := range []string{"app", "phase"} {
		if _, err := pg.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
	}
	v.write(t, "sys/policies/password/url-hostile", map[string]any{"policy": urlHostilePolicy})
	if err := v.root.Sys().Mount("database", &api.MountInput{Type: "database"}); err != nil {
		t.Fatal(err)
	}
	v.write(t, "database/config/pg", map[string]any{
		"plugin_name": "postgresql-database-plugin", "connection_url": pg.ConnectionURL(),
		"username": pg.AdminUser, "password": pg.AdminPassword,
		"allowed_roles": "phase", "password_policy": "url-hostile",
	})
	v.write(t, "database/roles/phase", map[string]any{
		"db_name":             "pg",
		"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`},
		"default_ttl":         defaultTTL, "max_ttl": maxTTL,
	})
	return &tmplDatabase{pg: pg, psql: tmplPsql(t)}
}

// tmplPsql finds psql beside PHASE_TEST_POSTGRES, as servers.Postgres does.
func tmplPsql(t *testing.T) string {
	t.Helper()
	bin := testenv.Tool(t, "PHASE_TEST_POSTGRES", "postgres")
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real
	}
	psql := filepath.Join(filepath.Dir(bin), "psql")
	if _, err := os.Stat(psql); err == nil {
		return psql
	}
	psql, err := exec.LookPath("psql")
	if err != nil {
		testenv.Missing(t, "psql is not beside %s nor on PATH", bin)
	}
	return psql
}

// sh runs script with sh -c in dir, with psql's directory first on PATH
// and nothing of the test's environment that libpq would read. It returns
// the trimmed output.
func (d *tmplDatabase) sh(t *testing.T, dir, script string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + filepath.Dir(d.psql) + ":/usr/bin:/bin", "LC_ALL=C", "PGCONNECT_TIMEOUT=5", "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", script, err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// exampleConfig turns a file of examples/templates into a config for this
// test: its secrets as they are, with the template text's replacements
// applied (the example's database host becomes the test's server), and the
// test's output directory, listen address, Vault source and reload.
func exampleConfig(t *testing.T, example, out, sourcesYAML, reloadYAML string, repl ...string) (path, addr string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../examples/templates", example))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", example, err)
	}
	r := strings.NewReplacer(repl...)
	secrets := c["secrets"].([]any)
	for _, s := range secrets {
		m := s.(map[string]any)
		if text, ok := m["template"].(string); ok {
			m["template"] = r.Replace(text)
		}
	}
	body, err := yaml.Marshal(map[string]any{"secrets": secrets})
	if err != nil {
		t.Fatal(err)
	}
	return writeConfig(t, out, string(body)+sourcesYAML+reloadYAML)
}

// testTemplateDatabase: the two database examples against one PostgreSQL
// lease each, which Vault replaces every few seconds, with passwords full
// of URL-special characters.
//
// examples/templates/database-url.yaml: psql connects with
// "$(cat database_url)" and with the pgpass file; after the lease is
// replaced both are rendered anew from the new lease and work again, and
// the old user name stops working once Vault revokes its lease.
//
// examples/templates/phase-database.yaml: sh sources database.env as
// Phase's entrypoint would and psql logs in with $DATABASE_USER and the
// password file beside it, both of one lease in every generation.
func testTemplateDatabase(t *testing.T, v *vaultServer) {
	db := startTmplDatabase(t, v, "4s", "8s")
	_, src := v.approle(t, `path "database/creds/phase" { capabilities = ["read"] }`)
	port := strconv.Itoa(db.pg.Port)

	t.Run("DatabaseURLAndPgpass", func(t *testing.T) {
		t.Parallel()
		out := shm(t)
		reloads := newReloadLog(t)
		cfg, addr := exampleConfig(t, "database-url.yaml", out, src, reloads.config(),
			"db.example.com:5432", "127.0.0.1:"+port, "sslmode=verify-full", "sslmode=disable")
		s := start(t, cfg, addr)
		s.waitReady()
		if _, err := os.Stat(filepath.Join(out, "db_username")); err == nil {
			t.Error("the input-only DB_USERNAME wrote a file")
		}
		if fi, err := os.Stat(filepath.Join(out, "pgpass")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("pgpass: %v, %v: libpq reads it only with mode 0600", fi, err)
		}

		// login checks one generation: the URL names the lease's user and
		// password, psql logs in with it and with the pgpass file.
		login := func() string {
			t.Helper()
			raw := readFile(t, filepath.Join(out, "database_url"))
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("database_url is not a URL: %v", err)
			}
			pw, _ := u.User.Password()
			user := u.User.Username()
			if u.Host != "127.0.0.1:"+port || u.Path != "/app" || !strings.HasPrefix(user, "v-") {
				t.Fatalf("database_url parses to host %q, path %q, user %q: a character of the credentials was not encoded", u.Host, u.Path, user)
			}
			for _, c := range urlHostileRequired {
				if !strings.ContainsRune(pw, c) {
					t.Fatalf("the password lacks %q: the password policy did not apply", c)
				}
			}
			got, err := db.sh(t, out, `psql "$(cat database_url)" -w -X -q -At -c 'select current_user'`)
			if err != nil || got != user {
				t.Fatalf("psql with $(cat database_url): %q, %v; want user %s", got, err, user)
			}
			got, err = db.sh(t, out, `psql -w -X -q -At -h 127.0.0.1 -d app -c 'select current_user'`,
				"PGPASSFILE="+filepath.Join(out, "pgpass"), "PGPORT="+port, "PGUSER="+user)
			if err != nil || got != user {
				t.Fatalf("psql with PGPASSFILE=pgpass: %q, %v; want user %s", got, err, user)
			}
			return user
		}
		firstURL := readFile(t, filepath.Join(out, "database_url"))
		first := login()
		n := len(reloads.times())
		eventuallyWithin(t, time.Minute, "a new lease rendered into database_url", func() bool {
			u, err := url.Parse(readFile(t, filepath.Join(out, "database_url")))
			return err == nil && u.User.Username() != first
		})
		eventually(t, "the reload of the new lease", func() bool { return len(reloads.times()) > n })
		if second := login(); second == first {
			t.Fatal("the lease was not replaced")
		}
		// The old URL held a lease that ends: once Vault revokes it, psql
		// is refused with it, so the re-render was needed.
		eventuallyWithin(t, time.Minute, "the old lease's URL to be refused", func() bool {
			_, err := db.sh(t, out, `psql "$OLD_URL" -w -X -q -At -c 'select 1'`, "OLD_URL="+firstURL)
			return err != nil
		})
		if code := s.stop(); code != 0 {
			t.Errorf("exit %d", code)
		}
	})

	t.Run("PhaseDatabaseEnv", func(t *testing.T) {
		t.Parallel()
		out := shm(t)
		reloads := newReloadLog(t)
		cfg, addr := exampleConfig(t, "phase-database.yaml", out, src, reloads.config(),
			"DATABASE_HOST='postgres'", "DATABASE_HOST='127.0.0.1'", "DATABASE_PORT='5432'", "DATABASE_PORT='"+port+"'")
		s := start(t, cfg, addr)
		s.waitReady()
		// Phase's entrypoint sources the env file, and get_secret reads
		// DATABASE_PASSWORD_FILE, both in the bundle's directory as it is
		// when the container starts (resolved once, as a reader that opens
		// the bundle would). psql logs in only when the user name and the
		// password are of one lease.
		const phaseLogin = `d=$(readlink -f database) && . "$d/database.env" && printf '%s ' "$DATABASE_USER" &&
PGPASSWORD="$(cat "$d/password")" psql -w -X -q -At -h "$DATABASE_HOST" -p "$DATABASE_PORT" -U "$DATABASE_USER" -d "$DATABASE_NAME" -c 'select current_user'`
		login := func() string {
			t.Helper()
			got, err := db.sh(t, out, phaseLogin)
			user, loggedIn, _ := strings.Cut(got, " ")
			if err != nil || !strings.HasPrefix(user, "v-") || loggedIn != user {
				t.Fatalf("Phase's login: DATABASE_USER %q, psql's current_user %q, %v", user, loggedIn, err)
			}
			return user
		}
		first := login()
		eventuallyWithin(t, time.Minute, "a new lease in database.env", func() bool {
			b, err := os.ReadFile(filepath.Join(out, "database", "database.env"))
			return err == nil && !strings.Contains(string(b), first)
		})
		if second := login(); second == first {
			t.Fatal("the lease was not replaced")
		}
		if code, env := runCmd(t, "env", "--config", cfg); code != 0 || strings.Contains(env, "DATABASE_USER_FILE") ||
			!strings.Contains(env, "DATABASE_PASSWORD_FILE="+filepath.Join(out, "database", "password")) {
			t.Errorf("env exit %d: want DATABASE_PASSWORD_FILE in the bundle and no line for the input-only DATABASE_USER:\n%s", code, env)
		}
	})
}

// testTemplateDotenv: a whole KV object written with format: dotenv and
// sourced by sh (and bash, when there is one), which must read back every
// value byte for byte: spaces, tabs, $, backquotes, double quotes,
// backslashes, # and UTF-8. A version that dotenv cannot write (a single
// quote in a value, a key that is no variable name) keeps the last good
// file and counts as a render error, without the value in any output.
func testTemplateDotenv(t *testing.T, v *vaultServer) {
	out := shm(t)
	good := map[string]string{
		"PLAIN":     value("plain"),
		"SPACES":    value(" a  b\tc "),
		"DOLLAR":    value("$HOME ${PATH} $(id) `id`"),
		"QUOTES":    value(`"double" \back\slash\ \n`),
		"HASH":      value("#not a comment # x"),
		"EQUALS":    value("k=v=w"),
		"SHELL":     value(";&|<>*?[]{}!~ && exit 1"),
		"UTF8":      value("héllo wörld ✓"),
		"EMPTY":     "",
		"lower_key": value("lower"),
	}
	kv := func(m map[string]string) map[string]any {
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	v.kvPut(t, "tmpl/env", kv(good))
	_, src := v.approle(t, `path "secret/data/tmpl/env" { capabilities = ["read"] }`)
	cfg, addr := writeConfig(t, out, `refresh: 1h
secrets:
  - name: APP_ENV
    ref: vault://secret/tmpl/env
    format: dotenv
    refresh: 1s
`+src)
	s := start(t, cfg, addr)
	s.waitReady()

	file := filepath.Join(out, "app_env")
	var keys []string
	for k := range good {
		keys = append(keys, k)
	}
	shells := []string{"sh"}
	if _, err := exec.LookPath("bash"); err == nil {
		shells = append(shells, "bash")
	}
	// readBack sources the file in a fresh shell and prints each variable
	// NUL-terminated.
	readBack := func(shell string) map[string]string {
		t.Helper()
		script := `set -u; . "$0"`
		for _, k := range keys {
			script += fmt.Sprintf(`; printf '%%s\0' "$%s"`, k)
		}
		cmd := exec.Command(shell, "-c", script, file)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s sourcing the dotenv file: %v", shell, err)
		}
		parts := strings.Split(string(b), "\x00")
		got := map[string]string{}
		for i, k := range keys {
			if i < len(parts) {
				got[k] = parts[i]
			}
		}
		return got
	}
	for _, sh := range shells {
		got := readBack(sh)
		for _, k := range keys {
			if got[k] != good[k] {
				t.Errorf("%s read %s back wrong (len %d, want %d)", sh, k, len(got[k]), len(good[k]))
			}
		}
	}
	lastGood := readFile(t, file)

	// Versions dotenv cannot write: the last good file stays, each counts
	// as a render error and is named in the status by its field.
	series := `phase_sidecar_secret_fetch_errors_total{reason="render",secret="APP_ENV",source="vault"}`
	for i, bad := range []struct{ field, value, why string }{
		{"QUOTED", value("it's"), "single quote"},
		{"BROKEN", value("line\nbreak"), "line break"},
		{"A-B", value("dash"), "not a variable name"},
	} {
		v.kvPut(t, "tmpl/env", map[string]any{"PLAIN": value("plain"), bad.field: bad.value})
		eventually(t, "the render error of field "+bad.field, func() bool {
			_, lastErr, _ := s.secretStatus("APP_ENV")
			return strings.Contains(lastErr, strconv.Quote(bad.field)) && strings.Contains(lastErr, bad.why)
		})
		if n := s.metric(series); n < float64(i+1) {
			t.Errorf("%v render errors after %d bad versions", n, i+1)
		}
		if got := readFile(t, file); got != lastGood {
			t.Fatalf("the version with field %s replaced the last good file", bad.field)
		}
	}
	good["PLAIN"] = value("plain-2")
	v.kvPut(t, "tmpl/env", kv(good))
	eventually(t, "the good version", func() bool { return readBack("sh")["PLAIN"] == value("plain-2") })
}

// testTemplateJSON: format json of a KV object with nested values and
// numbers, read by python's json module; a JSON document built by a
// template with the json function; and a Django settings fragment that
// python executes. Every value survives: quotes, backslashes, newlines,
// U+2028, a control character, non-ASCII.
func testTemplateJSON(t *testing.T, v *vaultServer) {
	python := testenv.Tool(t, "PHASE_TEST_PYTHON3", "python3")
	out := shm(t)
	hostile := value("q\"uo'te \\ back\nnew\tline\u2028sep\x01 ✓ </script> \"\"\"; import os #")
	object := map[string]any{
		"name":    value("app"),
		"port":    json.Number("5432"),
		"ratio":   json.Number("0.25"),
		"flag":    true,
		"nested":  map[string]any{"list": []any{json.Number("1"), "two", nil}},
		"hostile": hostile,
	}
	v.kvPut(t, "tmpl/json", object)
	v.kvPut(t, "tmpl/django", map[string]any{
		"secret_key": hostile, "db_user": value("django"), "db_password": value(`p@ss:w/o"rd\`),
	})
	_, src := v.approle(t, `
path "secret/data/tmpl/json" { capabilities = ["read"] }
path "secret/data/tmpl/django" { capabilities = ["read"] }
`)
	cfg, addr := writeConfig(t, out, `refresh: 1h
secrets:
  - name: APP_CONFIG
    ref: vault://secret/tmpl/json
    format: json
  - name: SECRET_KEY
    ref: vault://secret/tmpl/django#secret_key
    write: false
  - name: DB_USER
    ref: vault://secret/tmpl/django#db_user
    write: false
  - name: DB_PASSWORD
    ref: vault://secret/tmpl/django#db_password
    write: false
  - name: CREDENTIALS_JSON
    template: '{"user": {{ secret "DB_USER" | json }}, "password": {{ secret "DB_PASSWORD" | json }}}'
  - name: DJANGO_SECRETS
    file: secrets_settings.py
    template: |
      # Rendered by phase-sidecar; imported by settings.py.
      SECRET_KEY = {{ secret "SECRET_KEY" | json }}
      DATABASES = {
          "default": {
              "ENGINE": "django.db.backends.postgresql",
              "NAME": "app",
              "USER": {{ secret "DB_USER" | json }},
              "PASSWORD": {{ secret "DB_PASSWORD" | json }},
          },
      }
`+src)
	s := start(t, cfg, addr)
	s.waitReady()

	// py runs a python program and decodes the JSON it prints.
	py := func(program string, args ...string) any {
		t.Helper()
		cmd := exec.Command(python, append([]string{"-c", program}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("python: %v\n%s", err, stderr.String())
		}
		var v any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatalf("python's output: %v", err)
		}
		return v
	}
	canon := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const load = `import json, sys; print(json.dumps(json.load(open(sys.argv[1], encoding="utf-8"))))`
	if got := py(load, filepath.Join(out, "app_config")); canon(got) != canon(object) {
		t.Errorf("python read app_config differently from the object in Vault (numbers, nesting or a string changed)")
	}
	got := py(load, filepath.Join(out, "credentials_json")).(map[string]any)
	if got["user"] != value("django") || got["password"] != value(`p@ss:w/o"rd\`) {
		t.Errorf("python read credentials_json wrong")
	}
	const settings = `import json, runpy, sys; s = runpy.run_path(sys.argv[1]); d = s["DATABASES"]["default"]
print(json.dumps({"SECRET_KEY": s["SECRET_KEY"], "USER": d["USER"], "PASSWORD": d["PASSWORD"]}))`
	st := py(settings, filepath.Join(out, "secrets_settings.py")).(map[string]any)
	if st["SECRET_KEY"] != hostile || st["USER"] != value("django") || st["PASSWORD"] != value(`p@ss:w/o"rd\`) {
		t.Errorf("the Django settings fragment gave python other values")
	}
}

// nginxTemplate is the test's nginx.conf template: the certificate paths are
// the sidecar's bundle, the upstream's bearer token a KV secret, and an
// add_header line is edited into the file midway.
const nginxTemplate = `# Rendered by phase-sidecar from nginx.conf.tmpl.
daemon off;
master_process on;
worker_processes 1;
pid @PREFIX@/nginx.pid;
error_log @PREFIX@/error.log info;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path @PREFIX@/tmp/body;
	proxy_temp_path @PREFIX@/tmp/proxy;
	fastcgi_temp_path @PREFIX@/tmp/fastcgi;
	uwsgi_temp_path @PREFIX@/tmp/uwsgi;
	scgi_temp_path @PREFIX@/tmp/scgi;
	server {
		listen @ADDR@ ssl;
		ssl_certificate @OUT@/tls/fullchain.pem;
		ssl_certificate_key @OUT@/tls/tls.key;
		location / {
			proxy_pass http://@UPSTREAM@;
			proxy_set_header Authorization {{ printf "Bearer %s" (secret "UPSTREAM_TOKEN") | json }};
			#HEADER
		}
	}
}
`

// testTemplateNginx: nginx runs on a config rendered from a template_file.
// The certificate it serves is a bundle from Vault PKI whose fullchain.pem
// is itself a template (certificate then issuing CA); the config names
// that path and passes a bearer token from KV to its upstream. The sidecar
// sends SIGHUP through nginx's pid file when the token changes (the config
// is rendered anew), when the template file is edited, and when the
// certificate is replaced; nginx serves each new state.
func testTemplateNginx(t *testing.T, v *vaultServer) {
	nginx := testenv.Tool(t, "PHASE_TEST_NGINX", "nginx")
	out := shm(t)
	prefix := t.TempDir() // nginx's own files: pid, error log, temp paths
	if err := os.Mkdir(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := v.root.Sys().Mount("pki-tmpl", &api.MountInput{Type: "pki", Config: api.MountConfigInput{MaxLeaseTTL: "24h"}}); err != nil {
		t.Fatal(err)
	}
	ca := v.write(t, "pki-tmpl/root/generate/internal", map[string]any{"common_name": "phase template CA", "ttl": "24h"})
	caPool := x509.NewCertPool()
	if !caPool.AppendCertsFromPEM([]byte(ca.Data["certificate"].(string))) {
		t.Fatal("the root certificate does not parse")
	}
	v.write(t, "pki-tmpl/roles/web", map[string]any{
		"allowed_domains": "example.test", "allow_subdomains": true,
		"ttl": "12s", "max_ttl": "12s", "key_type": "ec", "key_bits": 256,
	})
	v.kvPut(t, "tmpl/nginx", map[string]any{"token": value("token-1")})
	_, src := v.approle(t, `
path "pki-tmpl/issue/web" { capabilities = ["create", "update"] }
path "secret/data/tmpl/nginx" { capabilities = ["read"] }
`)

	// The upstream records the Authorization header nginx sends.
	var mu sync.Mutex
	var seen string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Get("Authorization")
		mu.Unlock()
		fmt.Fprintln(w, "upstream ok")
	}))
	t.Cleanup(upstream.Close)
	lastAuth := func() string { mu.Lock(); defer mu.Unlock(); return seen }

	addr := testenv.Addr(t)
	tmplFile := filepath.Join(t.TempDir(), "nginx.conf.tmpl")
	text := strings.NewReplacer("@PREFIX@", prefix, "@OUT@", out, "@ADDR@", addr,
		"@UPSTREAM@", strings.TrimPrefix(upstream.URL, "http://")).Replace(nginxTemplate)
	writeFile(t, tmplFile, text)
	const ref = "vault://pki-tmpl/issue/web?common_name=app.example.test"
	cfg, sidecarAddr := writeConfig(t, out, `refresh: 1h
secrets:
  - name: TLS_CERT
    ref: "`+ref+`#certificate"
    write: false
  - name: TLS_ISSUING_CA
    ref: "`+ref+`#issuing_ca"
    write: false
  # The chain nginx wants in ssl_certificate: the certificate, then its CA.
  - name: TLS_FULLCHAIN
    bundle: tls
    file: fullchain.pem
    template: |
      {{ secret "TLS_CERT" | trim }}
      {{ secret "TLS_ISSUING_CA" | trim }}
  - name: TLS_KEY
    ref: "`+ref+`#private_key"
    bundle: tls
    file: tls.key
  - name: UPSTREAM_TOKEN
    ref: vault://secret/tmpl/nginx#token
    write: false
    refresh: 1s
  - name: NGINX_CONF
    template_file: `+tmplFile+`
    file: nginx.conf
reload:
  signal:
    name: SIGHUP
    pid_file: `+prefix+`/nginx.pid
  coalesce: 100ms
`+src)
	s := start(t, cfg, sidecarAddr)
	s.waitReady()
	conf := filepath.Join(out, "nginx.conf")
	if b, err := exec.Command(nginx, "-t", "-p", prefix, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t on the rendered config: %v\n%s", err, b)
	}
	startTmplNginx(t, nginx, prefix, conf)

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: caPool, ServerName: "app.example.test"},
		DisableKeepAlives: true, // each request sees nginx's current workers
	}}
	// get returns the serial nginx served, the header X-Rendered and the
	// Authorization header the upstream saw.
	get := func() (serial string, rendered string, auth string, err error) {
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			return "", "", "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return "", "", "", fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String(), resp.Header.Get("X-Rendered"), lastAuth(), nil
	}
	// fileSerial is the serial of the first certificate in fullchain.pem,
	// which must be followed by the issuing CA.
	fileSerial := func() string {
		t.Helper()
		rest := []byte(readFile(t, filepath.Join(out, "tls", "fullchain.pem")))
		var certs []*x509.Certificate
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			certs = append(certs, c)
		}
		if len(certs) != 2 || !certs[1].IsCA || certs[0].CheckSignatureFrom(certs[1]) != nil {
			t.Fatalf("fullchain.pem holds %d certificates, want the leaf and its CA", len(certs))
		}
		return certs[0].SerialNumber.String()
	}

	serial, _, auth, err := get()
	if err != nil {
		t.Fatal(err)
	}
	first := fileSerial()
	if serial != first || auth != "Bearer "+value("token-1") {
		t.Fatalf("nginx served serial %s (file %s) and sent the upstream the wrong token", serial, first)
	}
	reloads := func() float64 { return s.metric(`phase_sidecar_reloads_total{method="signal",result="success"}`) }
	r0 := reloads()

	// A new token: the config is rendered anew, nginx reloaded.
	v.kvPut(t, "tmpl/nginx", map[string]any{"token": value("token-2")})
	eventually(t, "nginx to send the new token", func() bool {
		_, _, auth, err := get()
		return err == nil && auth == "Bearer "+value("token-2")
	})
	// The template file edited: re-read, rendered, nginx reloaded.
	writeFile(t, tmplFile+".new", strings.Replace(text, "#HEADER", "add_header X-Rendered edited always;", 1))
	if err := os.Rename(tmplFile+".new", tmplFile); err != nil {
		t.Fatal(err)
	}
	eventually(t, "nginx to serve the edited template", func() bool {
		_, h, auth, err := get()
		return err == nil && h == "edited" && auth == "Bearer "+value("token-2")
	})
	if !strings.Contains(readFile(t, conf), "add_header X-Rendered edited always;") {
		t.Error("nginx.conf lacks the edit")
	}
	// The certificate replaced before its end: fullchain.pem rendered from
	// the new one, nginx serving it.
	eventuallyWithin(t, time.Minute, "nginx to serve the next certificate", func() bool {
		serial, _, _, err := get()
		return err == nil && serial != first && serial == fileSerial()
	})
	if r := reloads(); r < r0+3 {
		t.Errorf("%v signal reloads after the first request, want >= 3 (token, template, certificate)", r-r0)
	}
}

// startTmplNginx runs nginx in the foreground on the rendered config and
// waits for the pid file it writes once its socket is bound.
func startTmplNginx(t *testing.T, nginx, prefix, conf string) {
	t.Helper()
	cmd := exec.Command(nginx, "-p", prefix, "-c", conf, "-e", filepath.Join(prefix, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	pidFile := filepath.Join(prefix, "nginx.pid")
	eventuallyWithin(t, time.Minute, "nginx's pid file", func() bool {
		select {
		case <-exited:
			t.Fatal("nginx exited")
		default:
		}
		b, err := os.ReadFile(pidFile)
		return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(cmd.Process.Pid)
	})
}

// TestTemplateValidate runs `phase-sidecar validate` on configs with bad
// templates: each problem is reported with file:line:column, pointing into
// the template where the parser says (inside the config for an inline
// template, inside the template_file otherwise), with the secret's name,
// and the exit code is 2. An input-only secret nothing reads is a warning.
func TestTemplateValidate(t *testing.T) {
	dir := t.TempDir()
	tmplFile := func(name, text string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, text)
		return p
	}
	badFunc := tmplFile("func.tmpl", "server {\n  listen 1;\n  x {{ secret \"A\" | nope }};\n}\n")
	badName := tmplFile("name.tmpl", "server {\n  listen 1;\n  y {{ secret \"MISSING\" }};\n}\n")
	big := tmplFile("big.tmpl", `{{ secret "A" }}`+strings.Repeat("x", 2048))
	// Every config starts so; its secrets start on line 4.
	const head = "output:\n  dir: /dev/shm/phase-validate\nsecrets:\n"
	const inputA = "  - name: A\n    ref: file:///etc/hostname\n    write: false\n" // lines 4-6
	for _, tc := range []struct {
		name, body string
		code       int
		// want is a regular expression that one line of the output must
		// match, with the config's path as CONFIG; a (\d+) group is a column
		// that must fall within cols.
		want string
		cols [2]int
	}{
		{"UnknownFunctionInline", inputA + "  - name: B\n    template: '{{ secret \"A\" | frobnicate }}'\n", 2,
			`^CONFIG:8:(\d+): secrets\[1\]\.template: secret B: template: function "frobnicate" not defined$`, [2]int{16, 44}},
		{"UnknownSecretBlock", inputA + "  - name: URL\n    template: |\n      postgres://u:{{ secret \"A\" }}@h/db\n      {{ secret \"NOPE\" | urlencode }}\n", 2,
			`^CONFIG:10:10: secrets\[1\]\.template: secret URL: template: secret "NOPE" is not configured`, [2]int{}},
		// A folded scalar (>-, the docs' way of writing a long URL) is one
		// line of template text over several lines of the file.
		{"UnknownSecretFoldedBlock", inputA + "  - name: URL\n    template: >-\n      postgresql://{{ secret \"A\" | urlencode }}:\n      {{ secret \"NOPE\" }}@h/db\n", 2,
			`^CONFIG:10:10: secrets\[1\]\.template: secret URL: template: secret "NOPE" is not configured`, [2]int{}},
		// In a double-quoted scalar an escape is two characters of the file
		// and one of the template.
		{"UnknownSecretQuotedEscapes", inputA + "  - name: B\n    template: \"x\\\"{{ secret \\\"NOPE\\\" }}\"\n", 2,
			`^CONFIG:8:22: secrets\[1\]\.template: secret B: template: secret "NOPE" is not configured`, [2]int{}},
		{"UnknownSecretInTemplateFile", inputA + "  - name: NGINX\n    template_file: " + badName + "\n", 2,
			`^` + regexp.QuoteMeta(badName) + `:3:8: secrets\[1\]\.template_file: secret NGINX: template: secret "MISSING" is not configured`, [2]int{}},
		{"UnknownFunctionInTemplateFile", inputA + "  - name: NGINX\n    template_file: " + badFunc + "\n", 2,
			`^` + regexp.QuoteMeta(badFunc) + `:3:(\d+): secrets\[1\]\.template_file: secret NGINX: template: function "nope" not defined$`, [2]int{1, 26}},
		{"ParseError", inputA + "  - name: B\n    template: |\n      ok {{ secret \"A\" }}\n      {{ if }}\n", 2,
			`^CONFIG:10:(\d+): secrets\[1\]\.template: secret B: template: missing value for if$`, [2]int{7, 14}},
		{"NameNotLiteral", inputA + "  - name: B\n    template: '{{ secret (print \"A\") }}'\n", 2,
			`^CONFIG:8:19: secrets\[1\]\.template: secret B: template: secret needs the name as a quoted string`, [2]int{}},
		{"Cycle", "  - name: A\n    template: '{{ secret \"B\" }}'\n  - name: B\n    template: '{{ secret \"A\" }}'\n", 2,
			`^CONFIG:5:\d+: secrets\[0\]\.template: secret A: templates read each other in a cycle \(A → B → A\)`, [2]int{}},
		{"ReadsItself", "  - name: A\n    template: 'x{{ secret \"A\" }}'\n", 2,
			`^CONFIG:5:20: secrets\[0\]\.template: secret A: template: reads itself$`, [2]int{}},
		{"RefAndTemplate", "  - name: A\n    ref: file:///etc/hostname\n    template: '{{ secret \"A\" }}'\n", 2,
			`^CONFIG:5:10: secrets\[0\]\.ref: a secret has a ref or a template, not both`, [2]int{}},
		{"Neither", "  - name: A\n    file: a\n", 2,
			`^CONFIG:4:5: secrets\[0\]\.ref: required`, [2]int{}},
		{"ReadsWholeObject", "  - name: A\n    ref: file:///etc/\n    write: false\n  - name: B\n    template: '{{ secret \"A\" }}'\n", 2,
			`^CONFIG:8:19: secrets\[1\]\.template: secret B: template: secret "A" expands into one file per field`, [2]int{}},
		{"FormatOnField", "  - name: A\n    ref: vault://secret/app#x\n    format: json\nsources:\n  vault:\n    address: http://127.0.0.1:8200\n    auth: { method: token, token_file: /etc/hostname }\n", 2,
			`^CONFIG:6:13: secrets\[0\]\.format: format renders a whole object`, [2]int{}},
		{"FormatUnknown", "  - name: A\n    ref: file:///etc/hostname\n    format: toml\n", 2,
			`^CONFIG:6:13: secrets\[0\]\.format: want json, dotenv or yaml, got "toml"$`, [2]int{}},
		{"TemplateFileUnreadable", inputA + "  - name: B\n    template_file: " + filepath.Join(dir, "absent.tmpl") + "\n", 2,
			`^CONFIG:8:20: secrets\[1\]\.template_file: cannot read template_file`, [2]int{}},
		{"TemplateFileTooLarge", inputA + "  - name: B\n    template_file: " + big + "\nmax_file_size: 1KiB\n", 2,
			`^CONFIG:8:20: secrets\[1\]\.template_file: template_file .* is larger than max_file_size \(1024 bytes\)$`, [2]int{}},
		{"UnusedInputOnly", inputA + "  - name: B\n    ref: file:///etc/hostname\n", 0,
			`^warning: CONFIG:6:12: secrets\[0\]\.write: secret A is input only \(write: false\) but no template reads it`, [2]int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := filepath.Join(t.TempDir(), "config.yaml")
			writeFile(t, cfg, head+tc.body)
			code, out := runCmd(t, "validate", "--config", cfg)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			re := regexp.MustCompile(strings.ReplaceAll(tc.want, "CONFIG", regexp.QuoteMeta(cfg)))
			for _, line := range strings.Split(out, "\n") {
				line = strings.TrimPrefix(line, "phase-sidecar validate: ")
				m := re.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				if len(m) > 1 {
					if c, _ := strconv.Atoi(m[1]); c < tc.cols[0] || c > tc.cols[1] {
						t.Errorf("column %d is outside the template's text on that line (columns %d-%d):\n%s", c, tc.cols[0], tc.cols[1], line)
					}
				}
				return
			}
			t.Errorf("no line matches %s:\n%s", re, out)
		})
	}
}

// TestTemplateDocs: every YAML example in docs/templates.md and every
// config in examples/templates passes `phase-sidecar validate` with no
// warning. A docs example without an output: section is a secrets:
// fragment and is checked under a minimal head with a Vault source;
// template_file paths under /etc/phase-sidecar/templates/ are the files
// of examples/templates.
func TestTemplateDocs(t *testing.T) {
	examples, err := filepath.Abs("../../examples/templates")
	if err != nil {
		t.Fatal(err)
	}
	const fragmentHead = `output:
  dir: /run/secrets
sources:
  vault:
    address: https://vault.example.com:8200
    auth: { method: kubernetes, role: app }
`
	doc, err := os.ReadFile("../../docs/templates.md")
	if err != nil {
		t.Fatal(err)
	}
	type config struct{ where, text string }
	var configs []config
	var cur *strings.Builder
	start := 0
	for i, l := range strings.Split(string(doc), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(l) == "```yaml":
			cur, start = &strings.Builder{}, i+2
		case cur != nil && strings.TrimSpace(l) == "```":
			text := cur.String()
			if !regexp.MustCompile(`(?m)^output:`).MatchString(text) {
				text = fragmentHead + text
			}
			configs = append(configs, config{fmt.Sprintf("docs/templates.md:%d", start), text})
			cur = nil
		case cur != nil:
			cur.WriteString(l + "\n")
		}
	}
	if len(configs) < 6 {
		t.Fatalf("docs/templates.md has %d yaml examples; want at least 6 (DATABASE_URL, .pgpass, dotenv, Django, nginx, Phase)", len(configs))
	}
	files, _ := filepath.Glob(filepath.Join(examples, "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no examples/templates/*.yaml")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		configs = append(configs, config{"examples/templates/" + filepath.Base(f), string(b)})
	}
	for _, c := range configs {
		t.Run(filepath.Base(c.where), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.yaml")
			writeFile(t, path, strings.ReplaceAll(c.text, "/etc/phase-sidecar/templates/", examples+"/"))
			code, out := runCmd(t, "validate", "--config", path)
			if code != 0 || strings.Contains(out, "warning:") {
				t.Errorf("%s: validate exit %d:\n%s\n%s", c.where, code, out, c.text)
			}
		})
	}
}

// TestTemplateRenderErrorsHoldNoValue: templates that validate but fail at
// run time on the values they get. `once` exits 1 and names the secret; no
// output holds the value, nor a part or a decoding of it: text/template's
// own messages quote the data they fail on ("range can't iterate over
// VALUE"), and what it quotes is often a derived value (trimmed, split,
// decoded), not the value the secret function returned.
func TestTemplateRenderErrorsHoldNoValue(t *testing.T) {
	src := t.TempDir()
	// A file's value as a mounted secret often has a trailing newline.
	writeFile(t, filepath.Join(src, "a"), "  "+value("left")+":"+value("right")+"\n")
	writeFile(t, filepath.Join(src, "b64"), base64Std(value("decoded")))
	for _, tc := range []struct{ name, template string }{
		{"RangeOverValue", `{{ range secret "A" }}{{ end }}`},
		{"RangeOverTrimmed", `{{ range (secret "A" | trim) }}{{ end }}`},
		{"RangeOverPart", `{{ range (index (split ":" (secret "A")) 1) }}{{ end }}`},
		{"RangeOverDecoded", `{{ range (secret "B64" | base64decode) }}{{ end }}`},
		{"RangeOverReplaced", `{{ range (secret "A" | replace ":" "/") }}{{ end }}`},
		{"NotBase64", `{{ secret "A" | base64decode }}`},
		{"IndexOutOfRange", `{{ index (split ":" (secret "A")) 5 }}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := shm(t)
			cfg, _ := writeConfig(t, out, fmt.Sprintf(`secrets:
  - name: A
    ref: file://%[1]s/a
    write: false
  - name: B64
    ref: file://%[1]s/b64
    write: false
  - name: OUT
    template: '%[2]s'
  # Read, so that neither input is unused.
  - name: BOTH
    template: '{{ secret "A" }}{{ secret "B64" }}'
`, src, tc.template))
			if code, msg := runCmd(t, "validate", "--config", cfg); code != 0 {
				t.Fatalf("validate exit %d: %s", code, msg)
			}
			code, msg := runCmd(t, "once", "--config", cfg) // runCmd fails the test on a canary
			if code != 1 || !strings.Contains(msg, "OUT") {
				t.Errorf("once exit %d, want 1 naming OUT:\n%s", code, msg)
			}
			if _, err := os.Stat(filepath.Join(out, "out")); err == nil {
				t.Error("a failed render wrote a file")
			}
		})
	}
}

func base64Std(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// TestTemplateExpiresWithInput: a template expires with its input (here a
// file certificate's NotAfter): the expiry metric shows it, and with
// on_expiry: remove the rendered file goes once the input expired and no
// replacement came. The status says why in words that name something of
// the config.
func TestTemplateExpiresWithInput(t *testing.T) {
	src, out := t.TempDir(), shm(t)
	// Long enough for a slow start under -race: a value already expired
	// when it is read is never written with on_expiry: remove.
	notAfter := time.Now().Add(6 * time.Second)
	writeFile(t, filepath.Join(src, "cert.pem"), string(shortCert(t, notAfter)))
	cfg, addr := writeConfig(t, out, fmt.Sprintf(`refresh: 1h
secrets:
  - name: CERT
    ref: file://%s/cert.pem
    write: false
  - name: CHAIN
    template: '{{ secret "CERT" | trim }}'
    on_expiry: remove
    newline: add
`, src))
	s := start(t, cfg, addr)
	s.waitReady()
	if v := vaultMetric(s, "phase_sidecar_secret_expiry_timestamp_seconds", "secret=CHAIN", "source=template"); v != float64(notAfter.Unix()) {
		t.Errorf("CHAIN expiry %v, want the certificate's NotAfter %d", v, notAfter.Unix())
	}
	eventually(t, "the expired rendering to be removed", func() bool {
		_, err := os.Stat(filepath.Join(out, "chain"))
		return os.IsNotExist(err)
	})
	_, lastErr, _ := s.secretStatus("CHAIN")
	if !strings.Contains(lastErr, "expired") || strings.HasPrefix(lastErr, "://") {
		t.Errorf("CHAIN's last error %q: want why, without an empty ref (\"://\") in front", lastErr)
	}
}

// shortCert is a self-signed PEM certificate that ends at notAfter.
func shortCert(t *testing.T, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "short"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
