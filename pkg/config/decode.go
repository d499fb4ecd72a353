package config

import (
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/phase-sidecar/phase-sidecar/internal/textdist"
)

// kind is the type of a config key, as the decoder reads it. The JSON Schema
// is generated from the kinds the decoder records.
type kind int

const (
	kString     kind = iota // any scalar read as text
	kPath                   // absolute path
	kBool                   // true or false
	kInt                    // integer
	kFloat                  // number
	kDuration               // Go duration string, positive
	kMode                   // octal string such as "0440"
	kSize                   // bytes: integer or "1MiB"
	kStringList             // sequence of strings
	kStringMap              // mapping of string to string
	kObject                 // mapping with fixed keys
	kObjectList             // sequence of mappings with fixed keys
)

// decoder walks a yaml.Node tree. Walking the tree ourselves, rather than
// decoding into tagged structs, keeps every position, reports every problem
// instead of the first, and lets the set of accepted keys be recorded for
// the docs and schema tests.
type decoder struct {
	file string
	src  []byte // the file's bytes, for positions inside block scalars
	// tmpls are the parsed templates by secrets[] index, for the checks
	// across entries.
	tmpls map[int]tmplInfo
	// inputOnly are the write: false nodes by secrets[] index.
	inputOnly map[int]*yaml.Node
	errs      Errors
	// warns are problems that do not stop the sidecar but likely surprise
	// the user; validate prints them.
	warns Errors
	// keys, when non-nil, records every key the decoder asks for, by its
	// normalized path ("secrets[].ref"), and the decoder walks absent
	// sections too. Used to generate the JSON Schema and to test the docs.
	keys map[string]kind
}

func (d *decoder) recording() bool { return d.keys != nil }

// warnf records a warning at node n.
func (d *decoder) warnf(n *yaml.Node, field, format string, args ...any) {
	if d.recording() {
		return
	}
	e := &Error{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.warns = append(d.warns, e)
}

// errorAt records a problem at a position of another file (a
// template_file).
func (d *decoder) errorAt(file string, line, col int, field, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: file, Line: line, Column: col, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// errorf records a problem at node n (which may be nil: no position).
func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	e := &Error{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports an absent or null value; both mean "use the default".
func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		default:
			return "a value tagged " + n.Tag
		}
	}
	return "something else"
}

// mapping is one YAML mapping being decoded. Every key read through get is
// marked used; done reports the rest as unknown.
type mapping struct {
	d      *decoder
	n      *yaml.Node // nil when absent
	path   string     // field path for messages: "secrets[3]"
	norm   string     // normalized path for recording: "secrets[]"
	used   uint64     // bit i: pair i was read
	usedHi []bool     // for pairs beyond 64
	asked  [24]string // keys asked for, for "want one of"
	nAsked int
}

// newMapping checks that n is a mapping without duplicate keys. A null or
// wrongly typed n gives an empty mapping (so defaults still apply).
func (d *decoder) newMapping(n *yaml.Node, path, norm string) mapping {
	m := mapping{d: d, path: path, norm: norm}
	if isNull(n) {
		return m
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "want a mapping, got %s", describe(n))
		return m
	}
	m.n = n
	if len(n.Content) > 128 {
		m.usedHi = make([]bool, len(n.Content)/2)
	}
	// Duplicate keys: the YAML library accepts them into a Node, we don't.
	// Mappings are small, so a quadratic scan beats a map; large ones (only
	// malformed files have them) get a map.
	var seen map[string]int
	if len(n.Content) > 64 {
		seen = make(map[string]int, len(n.Content)/2)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "want a plain key, got %s", describe(k))
			m.markUsed(i / 2)
			continue
		}
		if k.Tag == "!!merge" || k.ShortTag() == "!!merge" {
			d.errorf(k, path, "merge keys (<<) are not supported; write the keys out")
			m.markUsed(i / 2)
			continue
		}
		first := -1
		if seen != nil {
			if j, ok := seen[k.Value]; ok {
				first = j
			} else {
				seen[k.Value] = i
			}
		} else {
			for j := 0; j < i; j += 2 {
				if p := resolve(n.Content[j]); p.Kind == yaml.ScalarNode && p.Value == k.Value {
					first = j
					break
				}
			}
		}
		if first >= 0 {
			d.errorf(k, m.field(k.Value), "duplicate key %q (first at line %d)", k.Value, resolve(n.Content[first]).Line)
			m.markUsed(i / 2)
		}
	}
	return m
}

func (m *mapping) markUsed(i int) {
	if i < 64 {
		m.used |= 1 << i
	} else if i-64 < len(m.usedHi) {
		m.usedHi[i-64] = true
	}
}

func (m *mapping) isUsed(i int) bool {
	if i < 64 {
		return m.used&(1<<i) != 0
	}
	return i-64 < len(m.usedHi) && m.usedHi[i-64]
}

// field is the path of key in messages.
func (m *mapping) field(key string) string {
	if m.path == "" {
		return key
	}
	return m.path + "." + key
}

// get returns the value of key, or nil when absent or null. The first
// occurrence wins; duplicates were reported by newMapping.
func (m *mapping) get(key string, k kind) *yaml.Node {
	if m.d.recording() {
		p := key
		if m.norm != "" {
			p = m.norm + "." + key
		}
		m.d.keys[p] = k
	}
	if m.nAsked < len(m.asked) {
		m.asked[m.nAsked] = key
		m.nAsked++
	}
	if m.n == nil {
		return nil
	}
	c := m.n.Content
	for i := 0; i+1 < len(c); i += 2 {
		if kn := resolve(c[i]); kn.Kind == yaml.ScalarNode && kn.Value == key {
			if m.isUsed(i / 2) {
				continue // a duplicate or merge key, reported already
			}
			m.markUsed(i / 2)
			v := c[i+1]
			if isNull(resolve(v)) {
				return nil
			}
			return v
		}
	}
	return nil
}

// rejected keys get a message of their own instead of "unknown key".
var rejected = map[string]string{
	"token":     "an inline token is not accepted; put it in a file and set sources.vault.auth.token_file, or set VAULT_TOKEN",
	"secret_id": "an inline secret_id is not accepted; put it in a file and set sources.vault.auth.secret_id_file",
	"role_id":   "an inline role_id is not accepted; put it in a file and set sources.vault.auth.role_id_file",
	"jwt":       "an inline jwt is not accepted; put it in a file and set sources.vault.auth.jwt_file",
}

// done reports every key that was not read.
func (m *mapping) done() {
	if m.n == nil {
		return
	}
	c := m.n.Content
	for i := 0; i+1 < len(c); i += 2 {
		if m.isUsed(i / 2) {
			continue
		}
		k := resolve(c[i])
		if msg, ok := rejected[k.Value]; ok && strings.HasPrefix(m.norm, "sources.vault") {
			m.d.errorf(k, m.field(k.Value), "%s", msg)
			continue
		}
		want := slices.Clone(m.asked[:m.nAsked])
		slices.Sort(want)
		msg := fmt.Sprintf("unknown key %q; want one of %s", k.Value, strings.Join(want, ", "))
		if s := suggest(k.Value, want); s != "" {
			msg = fmt.Sprintf("unknown key %q (did you mean %q?); want one of %s", k.Value, s, strings.Join(want, ", "))
		}
		m.d.errorf(k, m.field(k.Value), "%s", msg)
	}
}

// suggest returns the candidate closest to s, if it is close.
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := textdist.Levenshtein(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// sub returns the mapping under key. present is false when the key is
// absent; while recording, absent sections are walked anyway.
func (m *mapping) sub(key string) (sub mapping, walk bool) {
	n := m.get(key, kObject)
	norm := key
	if m.norm != "" {
		norm = m.norm + "." + key
	}
	return m.d.newMapping(resolve(n), m.field(key), norm), n != nil || m.d.recording()
}

// scalar returns the scalar under key, or nil when absent, null or not a
// scalar (reported).
func (m *mapping) scalar(key string, k kind, want string) *yaml.Node {
	v := resolve(m.get(key, k))
	if v == nil {
		return nil
	}
	if v.Kind != yaml.ScalarNode {
		m.d.errorf(v, m.field(key), "want %s, got %s", want, describe(v))
		return nil
	}
	return v
}

// str reads a string. Numbers are taken as their text (external_id: 123);
// booleans are refused, since "yes"/"true" as a name is almost always a
// mistake.
func (m *mapping) str(key string, dst *string) *yaml.Node {
	return m.strKind(key, kString, dst)
}

func (m *mapping) strKind(key string, k kind, dst *string) *yaml.Node {
	v := m.scalar(key, k, "a string")
	if v == nil {
		return nil
	}
	switch v.ShortTag() {
	case "!!str", "!!int", "!!float":
		*dst = v.Value
		return v
	}
	m.d.errorf(v, m.field(key), "want a string, got %s (quote it)", describe(v))
	return nil
}

// path reads an absolute path.
func (m *mapping) absPath(key string, dst *string) *yaml.Node {
	v := m.strKind(key, kPath, dst)
	if v != nil && !filepath.IsAbs(*dst) {
		m.d.errorf(v, m.field(key), "want an absolute path, got %q", *dst)
	}
	return v
}

func (m *mapping) boolean(key string, dst *bool) *yaml.Node {
	v := m.scalar(key, kBool, "true or false")
	if v == nil {
		return nil
	}
	b, err := strconv.ParseBool(strings.ToLower(v.Value))
	if v.ShortTag() != "!!bool" || err != nil {
		m.d.errorf(v, m.field(key), "want true or false, got %s", describe(v))
		return nil
	}
	*dst = b
	return v
}

// integer reads an int in [lo, hi].
func (m *mapping) integer(key string, dst *int, lo, hi int) *yaml.Node {
	v := m.scalar(key, kInt, "an integer")
	if v == nil {
		return nil
	}
	var i int
	if v.ShortTag() != "!!int" || v.Decode(&i) != nil {
		m.d.errorf(v, m.field(key), "want an integer, got %s", describe(v))
		return nil
	}
	if i < lo || i > hi {
		m.d.errorf(v, m.field(key), "want an integer from %d to %d, got %d", lo, hi, i)
		return nil
	}
	*dst = i
	return v
}

func (m *mapping) number(key string, dst *float64, lo float64) *yaml.Node {
	v := m.scalar(key, kFloat, "a number")
	if v == nil {
		return nil
	}
	var f float64
	if t := v.ShortTag(); t != "!!int" && t != "!!float" || v.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		m.d.errorf(v, m.field(key), "want a number, got %s", describe(v))
		return nil
	}
	if f < lo {
		m.d.errorf(v, m.field(key), "want a number >= %g, got %g", lo, f)
		return nil
	}
	*dst = f
	return v
}

// duration reads a positive Go duration ("90s", "1m30s").
func (m *mapping) duration(key string, dst *time.Duration) *yaml.Node {
	v := m.scalar(key, kDuration, "a duration")
	if v == nil {
		return nil
	}
	d, err := time.ParseDuration(v.Value)
	if v.ShortTag() != "!!str" || err != nil {
		hint := ""
		if v.ShortTag() == "!!int" || v.ShortTag() == "!!float" {
			hint = " (a number needs a unit: s, m, h)"
		}
		m.d.errorf(v, m.field(key), "want a duration such as \"90s\" or \"1m\"%s, got %q", hint, v.Value)
		return nil
	}
	if d <= 0 {
		m.d.errorf(v, m.field(key), "want a positive duration, got %q", v.Value)
		return nil
	}
	*dst = d
	return v
}

// durationAtLeast reads a duration of at least floor; why says what a
// shorter one would cost. On error *dst keeps its default.
func (m *mapping) durationAtLeast(key string, dst *time.Duration, floor time.Duration, why string) *yaml.Node {
	def := *dst
	v := m.duration(key, dst)
	if v != nil && *dst < floor {
		m.d.errorf(v, m.field(key), "want at least %s, got %q: %s", floor, v.Value, why)
		*dst = def
		return nil
	}
	return v
}

// mode reads a permission mode written as an octal string ("0440").
func (m *mapping) mode(key string, dst *fs.FileMode) *yaml.Node {
	v := m.scalar(key, kMode, "an octal string")
	if v == nil {
		return nil
	}
	if v.ShortTag() != "!!str" {
		m.d.errorf(v, m.field(key), "want an octal string such as \"0440\", got %s %s (quote it: an unquoted number is ambiguous)", describe(v), v.Value)
		return nil
	}
	u, err := strconv.ParseUint(strings.TrimPrefix(v.Value, "0o"), 8, 32)
	if !modeRE.MatchString(v.Value) || err != nil || u > 0o777 {
		m.d.errorf(v, m.field(key), "want an octal mode from \"0000\" to \"0777\" such as \"0440\", got %q", v.Value)
		return nil
	}
	*dst = fs.FileMode(u)
	return v
}

var modeRE = regexp.MustCompile(`^(0o[0-7]{1,3}|0?[0-7]{1,3})$`)

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

const maxSize = 1 << 30

// size reads a byte count: an integer, or a string with a unit ("1MiB",
// "512KiB", "2MB").
func (m *mapping) size(key string, dst *int64) *yaml.Node {
	v := m.scalar(key, kSize, "a size")
	if v == nil {
		return nil
	}
	bad := func() *yaml.Node {
		m.d.errorf(v, m.field(key), "want a size from 1 byte to 1GiB: an integer number of bytes or a string such as \"512KiB\" or \"1MiB\" (units B, KB, MB, GB, KiB, MiB, GiB), got %q", v.Value)
		return nil
	}
	var n int64
	switch v.ShortTag() {
	case "!!int":
		if v.Decode(&n) != nil {
			return bad()
		}
	case "!!str":
		s, mult := strings.TrimSpace(v.Value), int64(1)
		for _, u := range sizeUnits {
			if strings.HasSuffix(s, u.suffix) {
				s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
				break
			}
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i > maxSize/mult {
			return bad()
		}
		n = i * mult
	default:
		return bad()
	}
	if n < 1 || n > maxSize {
		return bad()
	}
	*dst = n
	return v
}

// stringList reads a list of strings.
func (m *mapping) stringList(key string, dst *[]string) *yaml.Node {
	v := resolve(m.get(key, kStringList))
	if v == nil {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		m.d.errorf(v, m.field(key), "want a list of strings, got %s", describe(v))
		return nil
	}
	out := make([]string, 0, len(v.Content))
	ok := true
	for i, e := range v.Content {
		e = resolve(e)
		if e.Kind != yaml.ScalarNode || e.ShortTag() == "!!null" || e.ShortTag() == "!!bool" {
			m.d.errorf(e, fmt.Sprintf("%s[%d]", m.field(key), i), "want a string, got %s", describe(e))
			ok = false
			continue
		}
		out = append(out, e.Value)
	}
	if !ok {
		return nil
	}
	*dst = out
	return v
}

// stringMap reads a mapping of strings. Values are never quoted in messages:
// headers may carry credentials.
func (m *mapping) stringMap(key string, dst *map[string]string) *yaml.Node {
	v := resolve(m.get(key, kStringMap))
	if v == nil {
		return nil
	}
	sub := m.d.newMapping(v, m.field(key), "")
	if sub.n == nil {
		return nil
	}
	out := make(map[string]string, len(v.Content)/2)
	for i := 0; i+1 < len(v.Content); i += 2 {
		if sub.isUsed(i / 2) {
			continue // duplicate, reported
		}
		k, e := resolve(v.Content[i]), resolve(v.Content[i+1])
		if e.Kind != yaml.ScalarNode || e.ShortTag() == "!!null" {
			m.d.errorf(e, m.field(key)+"."+k.Value, "want a string, got %s", describe(e))
			continue
		}
		out[k.Value] = e.Value
	}
	*dst = out
	return v
}

// items returns the mappings of the list under key. While recording, an
// absent list yields one nil item so its keys are walked.
func (m *mapping) items(key string) (*yaml.Node, []*yaml.Node) {
	v := resolve(m.get(key, kObjectList))
	if v == nil {
		if m.d.recording() {
			return nil, []*yaml.Node{nil}
		}
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		m.d.errorf(v, m.field(key), "want a list, got %s", describe(v))
		return nil, nil
	}
	return v, v.Content
}

// present reports whether key is given with a non-null value, valid or not;
// "required" checks use it so that a wrongly typed value gets one error,
// not two.
func (m *mapping) present(key string) bool {
	if m.n == nil {
		return false
	}
	c := m.n.Content
	for i := 0; i+1 < len(c); i += 2 {
		if kn := resolve(c[i]); kn.Kind == yaml.ScalarNode && kn.Value == key {
			return !isNull(resolve(c[i+1]))
		}
	}
	return false
}
