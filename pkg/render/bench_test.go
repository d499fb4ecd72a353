package render

import (
	"fmt"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
)

// The cost of one rendering, which a template adds to a change's
// propagation and to a first sync (docs/benchmarks.md, "Templates"):
//
//	go test -run '^$' -bench . -benchmem ./pkg/render/

const benchURL = `postgresql://{{ secret "DB_USERNAME" | urlencode }}:{{ secret "DB_PASSWORD" | urlencode }}@db.example.com:5432/app?sslmode=verify-full`

// benchNginx is a 1.5 KB nginx.conf with two secrets in it.
var benchNginx = `worker_processes 1;
events { worker_connections 64; }
http {
` + strings.Repeat("\t# a comment line that stands for the rest of a real config file\n", 20) + `	server {
		listen 443 ssl;
		ssl_certificate /run/secrets/tls/fullchain.pem;
		ssl_certificate_key /run/secrets/tls/tls.key;
		location / {
			proxy_pass http://upstream;
			proxy_set_header Authorization {{ printf "Bearer %s" (secret "UPSTREAM_TOKEN") | json }};
			proxy_set_header X-Api-Key {{ secret "API_KEY" | json }};
		}
	}
}
`

var benchValues = map[string]secret.Value{
	"DB_USERNAME":    secret.FromString("v-approle-phase-jSwO074h4JRcx62HjUzi-1796411697"),
	"DB_PASSWORD":    secret.FromString(`aB3@c:d/e?f#g%h\i&j+k=l[m]n"o$p`),
	"UPSTREAM_TOKEN": secret.FromString("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwaGFzZSJ9.c2lnbmF0dXJl"),
	"API_KEY":        secret.FromString("0123456789abcdef0123456789abcdef"),
}

func benchLookup(name string) (secret.Value, error) {
	v, ok := benchValues[name]
	if !ok {
		return secret.Value{}, fmt.Errorf("secret %q is not configured", name)
	}
	return v, nil
}

func benchExecute(b *testing.B, text string) {
	t, err := Parse("T", text)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Execute(benchLookup); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecuteDatabaseURL renders a DATABASE_URL from a user name and
// password: what every template of a first sync costs.
func BenchmarkExecuteDatabaseURL(b *testing.B) { benchExecute(b, benchURL) }

// BenchmarkExecuteNginxConf renders a config file with two secrets in it.
func BenchmarkExecuteNginxConf(b *testing.B) { benchExecute(b, benchNginx) }

// BenchmarkParseDatabaseURL parses the DATABASE_URL template: what each
// inline template costs at start (config parses it to check it, the engine
// once more).
func BenchmarkParseDatabaseURL(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("T", benchURL); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseNginxConf parses the config file's template: what a
// template_file costs again on each of its own changes (an inline template
// is parsed once, at start).
func BenchmarkParseNginxConf(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("T", benchNginx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFormat writes a 20-field object in each format.
func BenchmarkFormat(b *testing.B) {
	fields := make(map[string]secret.Value, 20)
	for i := range 20 {
		fields[fmt.Sprintf("KEY_%02d", i)] = secret.FromString(fmt.Sprintf("value-%02d-with some $pecial \"chars\"", i))
	}
	for _, f := range []string{JSON, Dotenv, YAML} {
		b.Run(f, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Format(f, fields, secret.Value{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
