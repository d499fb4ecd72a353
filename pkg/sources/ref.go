package sources

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Kinds of source; each is also the scheme of its refs and the value of the
// source metric label.
const (
	File   = "file"
	Vault  = "vault"
	AWSSM  = "aws-sm"
	AWSSSM = "aws-ssm"
)

// Kinds lists every known source kind.
var Kinds = []string{File, Vault, AWSSM, AWSSSM}

// Ref names one value in one source:
//
//	file:///abs/path            a file, or a directory (each regular file a field)
//	vault://MOUNT/PATH#FIELD    KV v1/v2 or any logical read path; ?version=N
//	aws-sm://NAME-OR-ARN#KEY    ?stage=AWSPREVIOUS | ?version_id=ID
//	aws-ssm:///PARAM/NAME       ?version=N | ?label=L; a path ending in / with ?recursive=true
type Ref struct {
	Kind  string     // File, Vault, AWSSM or AWSSSM
	Path  string     // file: absolute path; vault: MOUNT/PATH; aws-sm: name or ARN; aws-ssm: parameter name or path
	Field string     // after '#'; empty selects the whole value
	Query url.Values // validated per kind
	// Lead is set by the engine, not parsed: how far ahead of an expiring
	// value's end its replacement must be on disk. Sources that hold
	// expiring values (leases, certificates) schedule by it.
	Lead Lead
}

// Object is the grouping key: refs that differ only in Field share one fetch.
func (r Ref) Object() string {
	if len(r.Query) == 0 {
		return r.Kind + "://" + r.Path
	}
	return r.Kind + "://" + r.Path + "?" + r.Query.Encode()
}

// String is the canonical form of the ref. Refs carry no credentials, so it
// is safe to log.
func (r Ref) String() string {
	s := r.Object()
	if r.Field != "" {
		s += "#" + r.Field
	}
	return s
}

// Param returns the query parameter key, or "".
func (r Ref) Param(key string) string { return r.Query.Get(key) }

// Mount and SubPath split a vault ref's path at its first slash.
func (r Ref) Mount() string {
	m, _, _ := strings.Cut(r.Path, "/")
	return m
}

// SubPath is the part of a vault path after the mount.
func (r Ref) SubPath() string {
	_, p, _ := strings.Cut(r.Path, "/")
	return p
}

// PKIParams are the query keys of a Vault PKI issue ref
// (vault://MOUNT/issue/ROLE?common_name=…), passed to Vault as they are.
var PKIParams = []string{"common_name", "alt_names", "ip_sans", "uri_sans", "ttl"}

// IsPKIIssue reports whether a vault ref issues a certificate: its path is
// MOUNT/issue/ROLE or it carries PKI parameters. (The mount's type, known
// only at run time, has the last word.)
func (r Ref) IsPKIIssue() bool {
	return r.Kind == Vault && (strings.HasPrefix(r.SubPath(), "issue/") || slices.ContainsFunc(PKIParams, r.Query.Has))
}

// Expands reports whether the ref, as written, names several values that
// are written one file each: a directory ending in /, a recursive SSM path,
// a Vault secret with ?split=true or a PKI certificate, all without #field.
// A file ref without the trailing slash may still name a directory; only a
// look at the file system tells.
func (r Ref) Expands() bool {
	if r.Field != "" {
		return false
	}
	switch r.Kind {
	case File:
		return strings.HasSuffix(r.Path, "/")
	case AWSSSM:
		return r.Param("recursive") == "true"
	case Vault:
		return r.Param("split") == "true" || r.IsPKIIssue()
	}
	return false
}

// ErrRef marks every ref syntax error.
var ErrRef = errors.New("invalid ref")

// queryKeys lists the query parameters each kind accepts and how to check
// their values.
var queryKeys = map[string]map[string]func(string) error{
	File: {},
	Vault: {
		"version": positiveInt,
		// split=true: no whole-object Value, so a ref without #field
		// expands into one target per field.
		"split": func(s string) error {
			if s != "true" && s != "false" {
				return errors.New(`want "true" or "false"`)
			}
			return nil
		},
		// PKI issue parameters (vault://pki/issue/ROLE?common_name=…).
		"common_name": nonEmpty, "alt_names": nonEmpty, "ip_sans": nonEmpty, "uri_sans": nonEmpty,
		"ttl": nonEmpty,
	},
	AWSSM: {"stage": nonEmpty, "version_id": nonEmpty},
	AWSSSM: {"version": positiveInt, "label": nonEmpty, "recursive": func(s string) error {
		if s != "true" && s != "false" {
			return errors.New(`want "true" or "false"`)
		}
		return nil
	}},
}

func positiveInt(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return errors.New("want a positive integer")
	}
	return nil
}

func nonEmpty(s string) error {
	if s == "" {
		return errors.New("want a non-empty value")
	}
	return nil
}

// ParseRef parses and checks a ref. Errors wrap ErrRef and say what would be
// valid.
func ParseRef(s string) (Ref, error) {
	fail := func(format string, args ...any) (Ref, error) {
		return Ref{}, fmt.Errorf("%w %q: %s", ErrRef, s, fmt.Sprintf(format, args...))
	}
	if strings.ContainsAny(s, "\x00\r\n") {
		return fail("contains a NUL or line break")
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return fail("want SCHEME://…, one of file:///abs/path, vault://MOUNT/PATH#FIELD, aws-sm://NAME#KEY, aws-ssm:///PARAM/NAME")
	}
	checks, known := queryKeys[scheme]
	if !known {
		return fail("unknown scheme %q; want one of %s", scheme, strings.Join(Kinds, ", "))
	}
	r := Ref{Kind: scheme}
	rest, field, hasField := strings.Cut(rest, "#")
	switch {
	case hasField && field == "":
		return fail("empty #field: give a field name or drop the #")
	case strings.Contains(field, "?"):
		return fail("the field %q holds a ?: put ?query before #field", field)
	}
	r.Field = field
	rest, rawQuery, hasQuery := strings.Cut(rest, "?")
	r.Path = rest
	if hasQuery {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return fail("query: %v", err)
		}
		keys := make([]string, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			check, ok := checks[k]
			if !ok {
				return fail("unknown parameter %q for %s refs%s", k, scheme, allowed(checks))
			}
			if len(q[k]) != 1 {
				return fail("parameter %q given %d times", k, len(q[k]))
			}
			if err := check(q[k][0]); err != nil {
				return fail("parameter %q: %v", k, err)
			}
		}
		if len(q) > 0 {
			r.Query = q
		}
	}
	switch scheme {
	case File:
		if !strings.HasPrefix(r.Path, "/") {
			return fail("a file ref needs an absolute path: file:///abs/path (three slashes)")
		}
		if r.Field != "" {
			return fail("file refs take no #field")
		}
		if c := path.Clean(r.Path); c != strings.TrimSuffix(r.Path, "/") && c != r.Path {
			return fail("path is not clean; want %q", "file://"+c)
		}
	case Vault:
		mount, sub, _ := strings.Cut(r.Path, "/")
		if mount == "" || sub == "" || strings.HasPrefix(r.Path, "/") {
			return fail("want vault://MOUNT/PATH[#FIELD], e.g. vault://secret/phase/backend#secret_key")
		}
		if strings.Contains(r.Path, "//") || strings.HasSuffix(r.Path, "/") {
			return fail("path has an empty segment")
		}
		for _, seg := range strings.Split(r.Path, "/") {
			if seg == "." || seg == ".." {
				return fail("path segments . and .. are not allowed")
			}
		}
	case AWSSM:
		if r.Path == "" {
			return fail("want aws-sm://NAME-OR-ARN[#JSON_KEY]")
		}
		if r.Query.Has("stage") && r.Query.Has("version_id") {
			return fail("give stage or version_id, not both")
		}
	case AWSSSM:
		if r.Path == "" || r.Path == "/" && r.Param("recursive") != "true" {
			return fail("want aws-ssm:///PARAM/NAME, or a path ending in / with ?recursive=true")
		}
		if strings.Contains(r.Path, "//") {
			return fail("parameter name has an empty segment")
		}
		if r.Query.Has("version") && r.Query.Has("label") {
			return fail("give version or label, not both")
		}
		if r.Param("recursive") == "true" {
			if !strings.HasSuffix(r.Path, "/") {
				return fail("?recursive=true needs a path ending in /")
			}
			if r.Query.Has("version") || r.Query.Has("label") {
				return fail("?recursive=true takes no version or label")
			}
		} else if strings.HasSuffix(r.Path, "/") {
			return fail("a path ending in / reads many parameters; add ?recursive=true")
		}
	}
	return r, nil
}

func allowed(checks map[string]func(string) error) string {
	if len(checks) == 0 {
		return "; none are accepted"
	}
	keys := make([]string, 0, len(checks))
	for k := range checks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "; want one of " + strings.Join(keys, ", ")
}
