// Package config reads the one YAML config file strictly, applies defaults,
// validates everything at once, and hands plain structs to the rest of the
// program. No other package knows the file format.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v4"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// Options are what the program adds to the file's own rules.
type Options struct {
	// Available says why a secret's source kind (sources.File, …) cannot be
	// used with this config in this build, or returns "". Its answers are
	// reported with the other problems, at the secret's ref.
	Available func(c *Config, kind string) string
}

// Load reads and parses the config file at path.
func Load(path string) (*Config, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with Options.
func LoadWith(path string, o Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %q: %w", path, err)
	}
	return ParseWith(path, data, o)
}

// Parse decodes one YAML document. name is used in messages and as
// Config.Path. On any problem it returns Errors, listing every problem found,
// sorted by position.
func Parse(name string, data []byte) (*Config, error) { return ParseWith(name, data, Options{}) }

// ParseWith is Parse with Options.
func ParseWith(name string, data []byte, o Options) (*Config, error) {
	root, perr := parseYAML(name, data)
	if perr != nil {
		return nil, Errors{perr}
	}
	d := &decoder{file: name, src: data}
	c := d.config(root)
	if o.Available != nil {
		d.available(c, o.Available)
	}
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	c.Path = name
	d.warns.sort()
	c.Warnings = d.warns
	return c, nil
}

// available reports the secrets whose source cannot be used. A kind whose
// settings already have errors is judged once they are fixed, so a bad
// sources.vault.address does not also read as "no Vault address".
func (d *decoder) available(c *Config, why func(*Config, string) string) {
	broken := func(kind string) bool {
		section := "sources." + map[string]string{sources.Vault: "vault", sources.AWSSM: "aws", sources.AWSSSM: "aws"}[kind]
		for _, e := range d.errs {
			if e.Field == "sources" || (section != "sources." && (e.Field == section || strings.HasPrefix(e.Field, section+"."))) {
				return true
			}
		}
		return false
	}
	for i, s := range c.Secrets {
		if s.RefPos.Line == 0 || broken(s.Ref.Kind) {
			continue // no ref or a bad one (already reported), or its settings are wrong
		}
		if w := why(c, s.Ref.Kind); w != "" {
			d.errs = append(d.errs, &Error{File: d.file, Line: s.RefPos.Line, Column: s.RefPos.Column,
				Field: "secrets[" + strconv.Itoa(i) + "].ref",
				Msg:   fmt.Sprintf("source %q is not available in this build/config: %s", s.Ref.Kind, w)})
		}
	}
}

// parseYAML returns the root node of the single document in data.
func parseYAML(name string, data []byte) (*yaml.Node, *Error) {
	if e := binaryInput(name, data); e != nil {
		return nil, e
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "the file is empty; want at least output.dir and secrets"}
		}
		return nil, syntaxError(name, data, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(name, data, err)
	default:
		return nil, &Error{File: name, Line: next.Line, Column: next.Column, Msg: "a second YAML document; want exactly one"}
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: name, Msg: "the file is empty; want at least output.dir and secrets"}
	}
	return doc.Content[0], nil
}

// binaryInput reports invalid UTF-8 or a NUL byte with the line and column
// where it starts (the YAML library names only the byte), so a binary or
// mis-encoded file is found at once; the byte itself is not quoted.
func binaryInput(name string, data []byte) *Error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return &Error{File: name, Line: line, Column: col, Msg: fmt.Sprintf("invalid UTF-8 (byte 0x%02x at offset %d): the file is binary or not UTF-8; save it as UTF-8 text", data[i], i)}
		case r == 0:
			return &Error{File: name, Line: line, Column: col, Msg: fmt.Sprintf("a NUL byte at offset %d: the file is binary, not YAML text", i)}
		case r == '\n':
			line, col = line+1, 1
		case i == 0 && r == '\ufeff':
			// a BOM: not counted, as the YAML library does not
		default:
			col++
		}
		i += size
	}
	return nil
}

// byteOffset finds line:column (1-based, the column in characters, as the
// YAML library counts them; a leading BOM is not counted) in data, or -1.
func byteOffset(data []byte, line, column int) int {
	if line < 1 || column < 1 {
		return -1
	}
	at := 0
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		at = 3
	}
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[at:], '\n')
		if i < 0 {
			return len(data)
		}
		at += i + 1
	}
	for c := 1; c < column && at < len(data) && data[at] != '\n'; c++ {
		_, size := utf8.DecodeRune(data[at:])
		at += size
	}
	return at
}

// syntaxError turns a YAML library error into an Error at the place the
// parser stopped, with the construct it was in when that is elsewhere.
func syntaxError(name string, data []byte, err error) *Error {
	e := &Error{File: name, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	var le *yaml.LoadError
	if !errors.As(err, &le) {
		return e
	}
	e.Line, e.Column = le.Mark.Line, le.Mark.Column
	e.Msg = "invalid YAML: " + le.Message
	switch at := byteOffset(data, le.Mark.Line, le.Mark.Column); {
	case at >= len(data):
		e.Msg += " (at the end of the file)"
	case at >= 0 && data[at] == '\t':
		e.Msg += " (a tab: YAML indents with spaces only)"
	}
	if c := le.ContextMark; le.ContextMsg != "" && c.Line > 0 && c != le.Mark {
		e.Msg += fmt.Sprintf("; %s that starts at %d:%d", le.ContextMsg, c.Line, c.Column)
	}
	return e
}
