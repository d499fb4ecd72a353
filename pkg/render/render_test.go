package render

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
)

func values(m map[string]string) func(string) (secret.Value, error) {
	return func(name string) (secret.Value, error) {
		v, ok := m[name]
		if !ok {
			return secret.Value{}, errors.New("secret " + name + " is not configured")
		}
		return secret.FromString(v), nil
	}
}

func TestExecute(t *testing.T) {
	in := map[string]string{"USER": "app", "PASS": "p@ss:w/rd?#[]%é ", "B64": "aGVsbG8=", "LIST": "a,b,c"}
	for _, tc := range []struct{ tmpl, want string }{
		{`postgres://{{ secret "USER" | urlencode }}:{{ secret "PASS" | urlencode }}@db:5432/app`, "postgres://app:p%40ss%3Aw%2Frd%3F%23%5B%5D%25%C3%A9%20@db:5432/app"},
		{`{{ secret "PASS" | json }}`, `"p@ss:w/rd?#[]%é "`},
		{`{{ secret "USER" | base64 }}`, "YXBw"},
		{`{{ secret "B64" | base64decode }}`, "hello"},
		{`{{ secret "PASS" | trim }}`, "p@ss:w/rd?#[]%é"},
		{`{{ "it's" | quote }}`, `'it'\''s'`},
		{`{{ "a\nb" | indent 2 }}`, "  a\n  b"},
		{`{{ secret "USER" | replace "p" "P" }}`, "aPP"},
		{`{{ secret "LIST" | split "," | join ";" }}`, "a;b;c"},
		{`{{ "" | default "x" }}{{ secret "USER" | default "x" }}`, "xapp"},
		{`{{ if eq (secret "USER") "app" }}yes{{ end }}`, "yes"},
	} {
		tt, err := Parse("t", tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		v, err := tt.Execute(values(in))
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		if got := string(v.Reveal()); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
}

// TestQuoteRoundTrip: quote's output read back by a real POSIX shell.
func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", "it's", "'''", "$HOME `x` \\n \"q\"", "new\nline", ""} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != s {
			t.Errorf("sh read %q back as %q", s, out)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{"a\n{{ nosuch }}", "2:1: function \"nosuch\" not defined"},
		{"{{ secret }}", "1:4: secret takes one argument"},
		{"x {{ secret .Name }}", "1:6: secret needs the name as a quoted string"},
		{"{{ if }}", "1:1: missing value for if"},
	} {
		_, err := Parse("t", tc.tmpl)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.tmpl, err, tc.want)
		}
	}
	tt, err := Parse("t", "{{ secret \"A\" }}\n  {{ secret \"B\" | trim }}")
	if err != nil {
		t.Fatal(err)
	}
	if len(tt.Refs) != 2 || tt.Refs[0] != (Ref{"A", 1, 4}) || tt.Refs[1] != (Ref{"B", 2, 6}) {
		t.Errorf("refs = %+v", tt.Refs)
	}
}

// TestErrorsHoldNoValue: a failing template never quotes a value, even
// where text/template itself would.
func TestErrorsHoldNoValue(t *testing.T) {
	const canary = "s3cr3t-canary"
	for _, tmpl := range []string{
		`{{ secret "X" | base64decode }}`,
		`{{ index (secret "X") 99 }}`,
		`{{ template (secret "X") }}`,
		`{{ secret "X" | indent -1 }}`,
		`{{ secret "MISSING" }}`,
		`{{ printf "%s" (secret "X") | base64decode }}`,
		`{{ range (secret "X" | replace "a" "b") }}{{ end }}`,
		`{{ range (secret "X" | trim) }}{{ end }}`,
		`{{ range (secret "X" | split "-" | join "+") }}{{ end }}`,
	} {
		tt, err := Parse("t", tmpl)
		if err != nil {
			if strings.Contains(err.Error(), canary) {
				t.Errorf("%s: parse error holds the value: %v", tmpl, err)
			}
			continue
		}
		_, err = tt.Execute(values(map[string]string{"X": canary}))
		if err == nil {
			t.Errorf("%s: no error", tmpl)
			continue
		}
		if !errors.Is(err, ErrRender) || strings.Contains(err.Error(), canary) {
			t.Errorf("%s: %v", tmpl, err)
		}
	}
}

func TestFormat(t *testing.T) {
	f := map[string]secret.Value{"USER": secret.FromString("app"), "PASS": secret.FromString(`a b$c"d\e`)}
	v, err := Format(Dotenv, f, secret.Value{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v.Reveal()); got != "PASS='a b$c\"d\\e'\nUSER='app'\n" {
		t.Errorf("dotenv = %q", got)
	}
	// A POSIX shell's "." reads back the same bytes.
	out, err := exec.Command("sh", "-c", `eval "$1"; printf '%s|%s' "$USER" "$PASS"`, "sh", string(v.Reveal())).Output()
	if err != nil || string(out) != `app|a b$c"d\e` {
		t.Errorf("sh read %q, %v", out, err)
	}
	for _, bad := range []map[string]secret.Value{
		{"A-B": secret.FromString("x")},
		{"A": secret.FromString("it's")},
		{"A": secret.FromString("two\nlines")},
	} {
		if _, err := Format(Dotenv, bad, secret.Value{}); err == nil || strings.Contains(err.Error(), "it's") || strings.Contains(err.Error(), "two") {
			t.Errorf("dotenv %v: err = %v", bad, err)
		}
	}
	j, _ := Format(JSON, f, secret.Value{})
	if got := string(j.Reveal()); got != `{"PASS":"a b$c\"d\\e","USER":"app"}`+"\n" {
		t.Errorf("json = %q", got)
	}
	raw := secret.FromString(`{"n":1,"o":{"k":"v"}}`)
	if j, _ := Format(JSON, f, raw); string(j.Reveal()) != `{"n":1,"o":{"k":"v"}}`+"\n" {
		t.Errorf("json of raw = %q", j.Reveal())
	}
	y, _ := Format(YAML, f, secret.Value{})
	if got := string(y.Reveal()); !strings.Contains(got, "USER: app") || !strings.Contains(got, "PASS: ") {
		t.Errorf("yaml = %q", got)
	}
}
