package config

import (
	"path/filepath"
	"slices"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// Kinds lists the source kinds the secrets use, in the order of
// sources.Kinds. The caller checks that each is available (built in, and for
// vault an address from sources.vault.address or VAULT_ADDR).
func (c *Config) Kinds() []string {
	var used [4]bool
	for _, s := range c.Secrets {
		if i := slices.Index(sources.Kinds, s.Ref.Kind); i >= 0 && i < len(used) {
			used[i] = true
		}
	}
	var kinds []string
	for i, k := range sources.Kinds {
		if i < len(used) && used[i] {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// IsTemplate reports whether the secret is rendered from a template.
func (s Secret) IsTemplate() bool { return s.Template != "" || s.TemplateFile != "" }

// Source is the secret's source label: the ref's kind, or "template".
func (s Secret) Source() string {
	if s.IsTemplate() {
		return Template
	}
	return s.Ref.Kind
}

// Template is the source label of rendered secrets.
const Template = "template"

// Target is the secret's file relative to the output directory: File, or
// Bundle/File for a bundle member.
func (s Secret) Target() string {
	if s.Bundle != "" {
		return s.Bundle + "/" + s.File
	}
	return s.File
}

// EnvName is the variable that points the app at the secret's file:
// NAME_FILE.
func (c *Config) EnvName(s Secret) string { return s.Name + "_FILE" }

// TargetPath is the absolute path of the secret's file.
func (c *Config) TargetPath(s Secret) string {
	return filepath.Join(c.Output.Dir, s.Target())
}
