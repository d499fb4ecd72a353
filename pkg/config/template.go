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

// inlinePos maps line:col of an inline template to the config file: a
// block scalar's text starts on the next line, at its indentation; a
// quoted one a column after its quote.
func (d *decoder) inlinePos(n *yaml.Node, line, col int) (int, int) {
	if line <= 0 {
		return n.Line, n.Column
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		fl := n.Line + line
		return fl, d.indent(fl) + col
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if line == 1 {
			return n.Line, n.Column + col
		}
	default:
		if line == 1 {
			return n.Line, n.Column + col - 1
		}
	}
	return n.Line + line - 1, col
}

// indent is the number of leading spaces of the file's line (1-based).
func (d *decoder) indent(line int) int {
	lines := bytes.Split(d.src, []byte("\n"))
	if line < 1 || line > len(lines) {
		return 0
	}
	l := lines[line-1]
	return len(l) - len(bytes.TrimLeft(l, " "))
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
