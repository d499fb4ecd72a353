// Package render turns secret values into the bytes of a file: Go
// text/template templates with a small, safe set of functions (no
// environment, files, network or exec), and the json, dotenv and yaml
// formats of a whole object. Errors never quote a value.
package render

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"

	"go.yaml.in/yaml/v4"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
)

// Funcs names the functions a template may call besides text/template's
// built-ins, in the order the docs list them.
var Funcs = []string{"secret", "urlencode", "json", "base64", "base64decode", "trim", "quote", "indent", "replace", "split", "join", "default"}

// funcs is the function table; secret is bound per execution.
func funcs(lookup func(string) (string, error)) template.FuncMap {
	return template.FuncMap{
		"secret":       lookup,
		"urlencode":    URLEncode,
		"json":         jsonString,
		"base64":       func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64decode": base64Decode,
		"trim":         strings.TrimSpace,
		"quote":        Quote,
		"indent":       indent,
		"replace":      func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"split":        func(sep, s string) []string { return strings.Split(s, sep) },
		"join":         func(sep string, list []string) string { return strings.Join(list, sep) },
		"default":      func(def, v string) string { return cmpDefault(def, v) },
	}
}

func cmpDefault(def, v string) string {
	if v == "" {
		return def
	}
	return v
}

// Template is a parsed template and the secrets it names.
type Template struct {
	t    *template.Template
	Refs []Ref // every {{ secret "NAME" }}, in order

	mu     sync.Mutex // one execution at a time
	lookup func(string) (secret.Value, error)
	seen   []secret.Value // values handed out by this execution, to mask
}

// Ref is one call of secret with the name it asks for.
type Ref struct {
	Name         string
	Line, Column int // in the template text, 1-based
}

// Error is a problem in a template, with its position in the template text
// when the parser gives one.
type Error struct {
	Line, Column int // 0 when unknown
	Msg          string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg)
}

// ErrRender marks a failed rendering, for the reason label "render".
var ErrRender = errors.New("render failed")

// Parse parses text. Calls of secret must name a secret with a string
// literal, so that the secrets a template reads are known before it runs.
func Parse(name, text string) (*Template, error) {
	out := &Template{}
	t := template.New(name).Option("missingkey=error").Funcs(funcs(out.secret))
	if _, err := t.Parse(text); err != nil {
		return nil, parseError(name, text, err)
	}
	out.t = t
	var errs []error
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		walk(tt.Tree.Root, func(n parse.Node) {
			cmd, ok := n.(*parse.CommandNode)
			if !ok || len(cmd.Args) == 0 {
				return
			}
			id, ok := cmd.Args[0].(*parse.IdentifierNode)
			if !ok || id.Ident != "secret" {
				return
			}
			line, col := position(text, int(id.Pos))
			if len(cmd.Args) != 2 {
				errs = append(errs, &Error{line, col, fmt.Sprintf("secret takes one argument, the name of another secret, such as {{ secret \"DATABASE_PASSWORD\" }}; got %d", len(cmd.Args)-1)})
				return
			}
			s, ok := cmd.Args[1].(*parse.StringNode)
			if !ok {
				errs = append(errs, &Error{line, col, "secret needs the name as a quoted string, such as {{ secret \"DATABASE_PASSWORD\" }}, so the secrets a template reads are known before it runs"})
				return
			}
			out.Refs = append(out.Refs, Ref{Name: s.Text, Line: line, Column: col})
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// walk calls f for every node under n.
func walk(n parse.Node, f func(parse.Node)) {
	if n == nil {
		return
	}
	f(n)
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c, f)
		}
	case *parse.ActionNode:
		walk(n.Pipe, f)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walk(c, f)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, f)
		}
	case *parse.IfNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.RangeNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.WithNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.TemplateNode:
		walk(n.Pipe, f)
	}
}

// position is the 1-based line and column of byte offset off in text.
func position(text string, off int) (int, int) {
	off = min(max(off, 0), len(text))
	before := text[:off]
	line := strings.Count(before, "\n") + 1
	col := off - strings.LastIndexByte(before, '\n')
	return line, col
}

var parseErrRE = regexp.MustCompile(`^template: [^:]*:(\d+):(?:(\d+):)? ?(.*)$`)

// parseError turns text/template's "template: NAME:LINE: msg" into an
// Error with the line (and column where the parser gives one).
func parseError(name, text string, err error) error {
	msg := err.Error()
	m := parseErrRE.FindStringSubmatch(msg)
	if m == nil {
		return &Error{Msg: msg}
	}
	var line, col int
	fmt.Sscan(m[1], &line)
	if m[2] != "" {
		fmt.Sscan(m[2], &col)
	} else {
		col = 1
	}
	return &Error{Line: line, Column: col, Msg: m[3]}
}

// Execute renders the template; lookup gives the value of a named secret.
// A failed function or a missing secret is an error, never an empty
// string, and the error never holds a value: every value handed out is
// masked in it.
func (t *Template) Execute(lookup func(name string) (secret.Value, error)) (secret.Value, error) {
	// One execution at a time per template: the secret function reads this
	// execution's lookup, without a Clone of the template per run.
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lookup, t.seen = lookup, t.seen[:0]
	defer func() { t.lookup, t.seen = nil, t.seen[:0] }()
	var buf bytes.Buffer
	if err := t.t.Execute(&buf, nil); err != nil {
		clear(buf.Bytes())
		return secret.Value{}, fmt.Errorf("%w: %s", ErrRender, mask(safeExecError(err.Error()), t.seen))
	}
	v := secret.New(buf.Bytes())
	clear(buf.Bytes())
	return v, nil
}

// secret is the template function: the value of another secret, through
// the running execution's lookup.
func (t *Template) secret(name string) (string, error) {
	if t.lookup == nil {
		return "", nil // Parse's dry run: nothing to read
	}
	v, err := t.lookup(name)
	if err != nil {
		return "", err
	}
	t.seen = append(t.seen, v)
	return string(v.Reveal()), nil
}

var execErrRE = regexp.MustCompile(`^template: [^:]*:(\d+):(\d+): executing "[^"]*" at <(.*?)>: (.*)$`)

// safeMessages are the beginnings of text/template's execution messages
// that name types, positions and functions but never a value; any other
// message (such as "range can't iterate over VALUE") is withheld, since it
// may quote a value derived from a secret, which mask cannot recognise.
var safeMessages = []string{
	"error calling ", "can't evaluate field ", "wrong number of args", "wrong type for value",
	"incompatible types for comparison", "missing value for", "nil pointer evaluating",
	"can't give argument to non-function", "invalid value", "nil is not a command",
	"can't call method/function", "map has no entry for key",
}

// safeExecError keeps where a template failed (line:column and the action)
// and, when it is known to hold no value, what failed.
func safeExecError(msg string) string {
	m := execErrRE.FindStringSubmatch(msg)
	if m == nil {
		return "the template failed (the details could quote a value, so they are left out)"
	}
	what := m[4]
	safe := false
	for _, p := range safeMessages {
		if strings.HasPrefix(what, p) {
			safe = true
			break
		}
	}
	if strings.HasPrefix(what, "range can't iterate over ") {
		what, safe = "range cannot iterate over a string (use split first)", true
	}
	if !safe {
		what = "failed (the details could quote a value, so they are left out)"
	}
	return fmt.Sprintf("%s:%s: at <%s>: %s", m[1], m[2], m[3], what)
}

// mask replaces every value in msg (and its JSON and URL encodings, which
// a function may have produced) with a marker.
func mask(msg string, values []secret.Value) string {
	for _, v := range values {
		s := string(v.Reveal())
		if len(s) == 0 {
			continue
		}
		for _, form := range []string{s, URLEncode(s), strings.Trim(jsonString(s), `"`), fmt.Sprintf("%q", s)} {
			if form != "" {
				msg = strings.ReplaceAll(msg, form, "[redacted]")
			}
		}
	}
	return msg
}

// URLEncode percent-encodes every byte but RFC 3986's unreserved
// characters: what a URL's user and password need.
func URLEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// jsonString is s as a JSON string literal (HTML characters as they are).
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

func base64Decode(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return "", errors.New("base64decode: the value is not standard base64")
	}
	return string(b), nil
}

// Quote single-quotes s for a POSIX shell: 'it'\”s'.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func indent(n int, s string) (string, error) {
	if n < 0 || n > 1000 {
		return "", fmt.Errorf("indent: want 0 to 1000 spaces, got %d", n)
	}
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad), nil
}

// Formats of a whole object.
const (
	JSON   = "json"
	Dotenv = "dotenv"
	YAML   = "yaml"
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Format renders fields in format: json (an object, keys sorted), dotenv
// (KEY='value' lines that a POSIX shell's ".", Docker Compose's env_file
// and systemd's EnvironmentFile read back the same), or yaml. raw, when
// set, is the object's own JSON, kept as it is for json so that numbers
// and nesting survive.
func Format(format string, fields map[string]secret.Value, raw secret.Value) (secret.Value, error) {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	switch format {
	case JSON:
		if !raw.IsZero() && json.Valid(raw.Reveal()) {
			return secret.New(append(bytes.Clone(raw.Reveal()), '\n')), nil
		}
		m := make(map[string]string, len(fields))
		for _, k := range keys {
			m[k] = string(fields[k].Reveal())
		}
		b, err := json.Marshal(m)
		if err != nil {
			return secret.Value{}, fmt.Errorf("%w: json: %v", ErrRender, err)
		}
		return secret.New(append(b, '\n')), nil
	case Dotenv:
		var b bytes.Buffer
		for _, k := range keys {
			if !envName.MatchString(k) {
				return secret.Value{}, fmt.Errorf("%w: dotenv: field %q is not a variable name (want ^[A-Za-z_][A-Za-z0-9_]*$); rename it or use format json", ErrRender, k)
			}
			v := fields[k].Reveal()
			if bytes.ContainsAny(v, "'\n\r\x00") {
				return secret.Value{}, fmt.Errorf("%w: dotenv: the value of field %q holds a single quote, a line break or NUL, which a shell, Compose's env_file and systemd do not read back alike; use format json", ErrRender, k)
			}
			b.WriteString(k)
			b.WriteString("='")
			b.Write(v)
			b.WriteString("'\n")
		}
		return secret.New(b.Bytes()), nil
	case YAML:
		m := make(map[string]string, len(fields))
		for _, k := range keys {
			m[k] = string(fields[k].Reveal())
		}
		b, err := yaml.Marshal(m)
		if err != nil {
			return secret.Value{}, fmt.Errorf("%w: yaml: %v", ErrRender, err)
		}
		return secret.New(b), nil
	}
	return secret.Value{}, fmt.Errorf("%w: unknown format %q", ErrRender, format)
}
