package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/phase-sidecar/phase-sidecar/pkg/render"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// tmplInfo is what the checks across entries need of one template.
type tmplInfo struct {
	node *yaml.Node // the inline template; nil for template_file
	file string     // template_file
	refs []render.Ref
}

// template reads secrets[i].template or .template_file and checks it
// offline: it parses, calls only known functions, and names secrets with
// literals. Positions point into the template where the parser says.
func (d *decoder) template(tmplN, tfileN *yaml.Node, path string, i int, s *Secret, maxSize int64) {
	info := tmplInfo{node: tmplN}
	field := path + ".template"
	text := s.Template
	if tfileN != nil {
		field = path + ".template_file"
		s.TemplateFile = filepath.Clean(s.TemplateFile)
		info.file = s.TemplateFile
		b, err := readTemplate(s.TemplateFile, maxSize)
		if err != nil {
			d.errorf(tfileN, field, "%v", err)
			return
		}
		text = string(b)
		r, err := sources.ParseRef("file://" + s.TemplateFile)
		if err != nil {
			d.errorf(tfileN, field, "%v", err)
			return
		}
		s.Ref = r // the file source reads (and watches) the template
		s.RefPos = Pos{Line: tfileN.Line, Column: tfileN.Column}
	} else if int64(len(text)) > maxSize {
		d.errorf(tmplN, field, "the template is %d bytes, more than max_file_size (%d)", len(text), maxSize)
		return
	}
	if strings.TrimSpace(text) == "" {
		d.errorf(at(tmplN, tfileN), field, "the template is empty")
		return
	}
	t, err := render.Parse(s.Name, text)
	if err != nil {
		for _, e := range splitErrs(err) {
			var re *render.Error
			if !errors.As(e, &re) {
				d.errorf(at(tmplN, tfileN), field, "secret %s: %v", s.Name, e)
				continue
			}
			d.tmplError(info, re.Line, re.Column, field, "secret %s: template: %s", s.Name, re.Msg)
		}
		return
	}
	if len(t.Refs) == 0 {
		d.errorf(at(tmplN, tfileN), field, "secret %s: the template reads no secret ({{ secret \"NAME\" }}); for a fixed file, write it yourself", s.Name)
		return
	}
	info.refs = t.Refs
	if tfileN == nil {
		s.Parsed = t
	}
	for _, r := range t.Refs {
		if !slices.Contains(s.Inputs, r.Name) {
			s.Inputs = append(s.Inputs, r.Name)
		}
	}
	d.tmpls[i] = info
}

func at(a, b *yaml.Node) *yaml.Node {
	if a != nil {
		return a
	}
	return b
}

func splitErrs(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// readTemplate reads a template_file, at most maxSize bytes.
func readTemplate(path string, maxSize int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read template_file %q: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read template_file %q: %v", path, err)
	}
	if n > maxSize {
		return nil, fmt.Errorf("template_file %q is larger than max_file_size (%d bytes)", path, maxSize)
	}
	return buf.Bytes(), nil
}

// tmplError reports a problem at line:col of a template: inside the config
// for an inline one, inside the template_file otherwise.
func (d *decoder) tmplError(info tmplInfo, line, col int, field, format string, args ...any) {
	if info.node == nil {
		d.errorAt(info.file, line, col, field, format, args...)
		return
	}
	fl, fc := d.inlinePos(info.node, line, col)
	d.errorf(&yaml.Node{Line: fl, Column: fc}, field, format, args...)
}

// inlinePos maps line:col of an inline template to the config file. It
// replays how YAML turned the scalar's source into its value (escapes in
// double quotes, ” in single quotes, the indentation and folding of block
// scalars), so the position lands on the character the user wrote.
func (d *decoder) inlinePos(n *yaml.Node, line, col int) (int, int) {
	if line <= 0 {
		return n.Line, n.Column
	}
	off := runeOffset(n.Value, line, col)
	idx := d.scalarIndex(n)
	if off >= 0 && off < len(idx) {
		return idx[off].Line, idx[off].Column
	}
	return n.Line, n.Column
}

// runeOffset is the index, in runes, of line:col (1-based, col in runes) in
// text, or -1.
func runeOffset(text string, line, col int) int {
	l, c, i := 1, 1, 0
	for _, r := range text {
		if l == line && c == col {
			return i
		}
		if r == '\n' {
			l, c = l+1, 1
		} else {
			c++
		}
		i++
	}
	if l == line && c == col {
		return i
	}
	return -1
}

// scalarIndex gives, for each rune of n's value, where it was written.
func (d *decoder) scalarIndex(n *yaml.Node) []Pos {
	lines := strings.Split(string(d.src), "\n")
	src := func(l int) []rune {
		if l < 1 || l > len(lines) {
			return nil
		}
		return []rune(lines[l-1])
	}
	lead := func(rs []rune) int { return len(rs) - len([]rune(strings.TrimLeft(string(rs), " \t"))) }
	var idx []Pos
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		// Each content line gives its runes after the indentation and
		// then one for its line break (kept, or folded into a space).
		indent := -1
		for l := n.Line + 1; l <= len(lines); l++ {
			rs := src(l)
			if strings.TrimSpace(string(rs)) == "" {
				idx = append(idx, Pos{l, 1})
				continue
			}
			ind := lead(rs)
			if indent < 0 {
				indent = ind
			}
			if ind < indent {
				break
			}
			for c := indent; c < len(rs); c++ {
				idx = append(idx, Pos{l, c + 1})
			}
			idx = append(idx, Pos{l, len(rs) + 1})
		}
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		l, rs := n.Line, src(n.Line)
		c := n.Column // the opening quote is at index c-1: content from c
		for l <= len(lines) {
			if c >= len(rs) {
				// A line break inside quotes folds to a space; the next
				// line's leading blanks are dropped.
				idx = append(idx, Pos{l, c + 1})
				l++
				rs = src(l)
				c = lead(rs)
				continue
			}
			r := rs[c]
			switch {
			case n.Style == yaml.DoubleQuotedStyle && r == '"':
				return idx
			case n.Style == yaml.DoubleQuotedStyle && r == '\\':
				width := 2
				if c+1 < len(rs) {
					switch rs[c+1] {
					case 'x':
						width = 4
					case 'u':
						width = 6
					case 'U':
						width = 10
					}
				}
				idx = append(idx, Pos{l, c + 1})
				c += width
			case n.Style == yaml.SingleQuotedStyle && r == '\'':
				if c+1 < len(rs) && rs[c+1] == '\'' {
					idx = append(idx, Pos{l, c + 1})
					c += 2
					continue
				}
				return idx
			default:
				idx = append(idx, Pos{l, c + 1})
				c++
			}
		}
	default: // plain: later lines are folded, their indentation dropped
		rs := src(n.Line)
		for c := n.Column - 1; c < len(rs); c++ {
			idx = append(idx, Pos{n.Line, c + 1})
		}
		idx = append(idx, Pos{n.Line, len(rs) + 1})
		for l := n.Line + 1; l <= len(lines); l++ {
			rs = src(l)
			for c := lead(rs); c < len(rs); c++ {
				idx = append(idx, Pos{l, c + 1})
			}
			idx = append(idx, Pos{l, len(rs) + 1})
		}
	}
	return idx
}

// templateInputs checks what templates read: every secret "NAME" names a
// configured secret, no template reads itself through others, and every
// input-only secret is read by some template.
func (d *decoder) templateInputs(secrets []Secret) {
	byName := make(map[string]int, len(secrets))
	for i, s := range secrets {
		if _, dup := byName[s.Name]; !dup && s.Name != "" {
			byName[s.Name] = i
		}
	}
	used := map[string]bool{}
	for i, info := range d.tmpls {
		s := secrets[i]
		field := itemField(i, ".template")
		if info.node == nil {
			field = itemField(i, ".template_file")
		}
		for _, r := range info.refs {
			used[r.Name] = true
			j, ok := byName[r.Name]
			switch {
			case !ok:
				d.tmplError(info, r.Line, r.Column, field, "secret %s: template: secret %q is not configured; add it to secrets[] (write: false if it needs no file of its own)", s.Name, r.Name)
			case j == i:
				d.tmplError(info, r.Line, r.Column, field, "secret %s: template: reads itself", s.Name)
			case secrets[j].Ref.Expands() && !secrets[j].IsTemplate():
				d.tmplError(info, r.Line, r.Column, field, "secret %s: template: secret %q expands into one file per field (%s); a template reads one value: give it a #field", s.Name, r.Name, secrets[j].Ref.String())
			}
		}
	}
	// Cycles through other templates, each reported once, at the first
	// of its members.
	for i := range d.tmpls {
		if cycle := findCycle(i, secrets, byName); cycle != nil && slices.Min(cycle) == i {
			names := make([]string, 0, len(cycle)+1)
			for _, j := range cycle {
				names = append(names, secrets[j].Name)
			}
			names = append(names, secrets[i].Name)
			field := itemField(i, ".template")
			if d.tmpls[i].node == nil {
				field = itemField(i, ".template_file")
			}
			d.tmplError(d.tmpls[i], 0, 0, field, "secret %s: templates read each other in a cycle (%s); break it", secrets[i].Name, strings.Join(names, " → "))
		}
	}
	for i, n := range d.inputOnly {
		if !used[secrets[i].Name] {
			d.warnf(n, itemField(i, ".write"), "secret %s is input only (write: false) but no template reads it: it is fetched for nothing", secrets[i].Name)
		}
	}
}

// findCycle returns the templates on a path from template i back to
// itself (starting with i), or nil.
func findCycle(i int, secrets []Secret, byName map[string]int) []int {
	seen := map[int]bool{}
	var dfs func(j int, path []int) []int
	dfs = func(j int, path []int) []int {
		for _, name := range secrets[j].Inputs {
			k, ok := byName[name]
			if !ok || !secrets[k].IsTemplate() {
				continue
			}
			if k == i {
				if j == i {
					continue // reading itself is reported on its own
				}
				return path
			}
			if seen[k] {
				continue
			}
			seen[k] = true
			if c := dfs(k, append(path, k)); c != nil {
				return c
			}
		}
		return nil
	}
	return dfs(i, []int{i})
}
