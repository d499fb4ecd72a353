package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// EnvVar is one entry of the app's environment: a NAME_FILE variable and
// the path it holds, or, for a secret whose files are named only after a
// fetch, a Note (Name and Path empty) that says what to expect instead.
type EnvVar struct {
	Name, Path string
	Note       string
}

// EscapeDollars writes each $ of s as $$: Kubernetes expands $(VAR) in a
// container's env value and Compose $VAR and ${VAR} in any value; both read
// $$ as one literal $, so a path reaches the app as written.
func EscapeDollars(s string) string { return strings.ReplaceAll(s, "$", "$$") }

// AppEnv is the environment the secrets give the app, as `env` prints it:
// one NAME_FILE variable per written file, and a note in place of a secret
// that expands to several files (a directory, a recursive parameter path, a
// split Vault object) or of a bundle that writes such a source's entries
// under their own names. Input-only secrets (write: false) have no file and
// no entry. The notes come first, in config order, then the variables
// sorted by name.
//
// It looks at the filesystem: a file ref naming a directory without its
// trailing slash expands too (see expands).
func (c *Config) AppEnv() []EnvVar {
	var env []EnvVar
	for _, s := range c.Secrets {
		if s.InputOnly {
			continue // no file: nothing for the app to read
		}
		if s.Bundle != "" && perField(s) {
			env = append(env, EnvVar{Note: fmt.Sprintf("%s writes each entry of %s under its own name in %s/", s.Name, s.Ref, filepath.Join(c.Output.Dir, s.Bundle))})
			continue
		}
		if p := c.TargetPath(s); expands(s) {
			env = append(env, EnvVar{Note: fmt.Sprintf("%s expands to one %s_<KEY>_FILE=%s_<key> per entry of %s", s.Name, s.Name, p, s.Ref)})
		} else {
			env = append(env, EnvVar{Name: c.EnvName(s), Path: p})
		}
	}
	sort.SliceStable(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	return env
}

// expands reports whether a secret outside a bundle is written as several
// files whose names are known only after a fetch (see perField).
func expands(s Secret) bool {
	return s.Bundle == "" && perField(s) // a bundle's entries are its members
}

// perField reports whether a secret's object is written one file per field
// (in a bundle, each under the field's own name). Beyond the ref's syntax
// (Ref.Expands) it stats a file ref's path, so a directory named without its
// trailing slash counts too; a path that does not exist (yet) is taken for a
// file. A template, or an object rendered whole by format, is one file.
func perField(s Secret) bool {
	if s.IsTemplate() || s.Format != "" {
		return false
	}
	if s.Ref.Expands() {
		return true
	}
	if s.Ref.Kind == sources.File && s.Ref.Field == "" {
		fi, err := os.Stat(s.Ref.Path)
		return err == nil && fi.IsDir()
	}
	return false
}
