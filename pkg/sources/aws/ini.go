package aws

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The AWS shared config and credentials files, read as the SDK reads them:
// a port, rule by rule, of internal/ini v1.8.3 (tokenize.go, parse.go,
// strings.go) and of config v1.33.18's section handling (shared_config.go:
// processConfigSections, processCredentialsSections, mergeSections). A
// reader that differs can select other keys than the SDK would, so that the
// same files silently yield another principal or region; keep the two in
// step when either changes.

// iniValue is one key's value and where it was set.
type iniValue struct {
	str  string // "" for a key that holds indented sub-properties
	file string
	line int
}

// iniSection is one section: its keys (lower-cased) and whether exactly one
// of the access key pair is present (the SDK's "partial credentials").
type iniSection struct {
	values  map[string]iniValue
	partial bool
}

func (s *iniSection) has(k string) bool { _, ok := s.values[k]; return ok }

// parseINI splits data into sections keyed by the SDK's section name
// ("profile dev", "default", "dev"). A lone quote as a value is an error:
// the SDK's unquoting panics on it.
func parseINI(file, data string) (map[string]*iniSection, error) {
	sections := map[string]*iniSection{}
	var cur *iniSection
	ckey := "" // the last property of the section, owner of sub-properties
	for i, line := range strings.Split(data, "\n") {
		n := i + 1
		if strings.TrimSpace(line) == "" || isINIComment(line) {
			continue
		}
		if name, ok := iniProfileLine(line); ok {
			if cur = sections[name]; cur == nil {
				cur = &iniSection{values: map[string]iniValue{}}
				sections[name] = cur
			}
			ckey = ""
			continue
		}
		indented := line[0] == ' ' || line[0] == '\t'
		var k, v string
		var ok bool
		if indented {
			k, v, ok = splitINIProperty(strings.TrimLeft(line, " \t")) // comments stay in the value
		} else {
			k, v, ok = splitINIProperty(strings.TrimRight(trimINIComment(line), " \t"))
		}
		if ok {
			if v == `"` || v == "'" {
				return nil, fmt.Errorf("%s line %d: the value of %s is a lone quote, which the AWS SDK cannot read; remove it or quote the whole value",
					file, n, strings.ToLower(k))
			}
			v = unquoteINI(v)
		}
		switch {
		case ok && !indented: // a property
			if cur == nil {
				continue // before any section: ignored
			}
			ckey = strings.ToLower(k)
			cur.values[ckey] = iniValue{str: v, file: file, line: n}
		case ok: // a sub-property
			if cur == nil {
				continue
			}
			if ckey == "" || cur.values[ckey].str != "" {
				// Orphaned: the SDK promotes it to a property, and only
				// now strips an inline comment.
				ckey = strings.ToLower(k)
				cur.values[ckey] = iniValue{str: strings.TrimSpace(trimINIComment(v)), file: file, line: n}
				continue
			}
			// Nested under ckey, whose string value stays "".
		case indented: // a continuation of the last value
			if ckey == "" {
				continue
			}
			if old := cur.values[ckey]; old.str != "" {
				old.str += "\n" + strings.TrimLeft(line, " \t")
				cur.values[ckey] = old
			}
		}
		// Anything else the SDK ignores too.
	}
	for _, s := range sections {
		s.partial = s.has(keyAccessKeyID) != s.has(keySecretAccessKey)
	}
	return sections, nil
}

func isINIComment(line string) bool {
	t := strings.TrimLeft(line, " \t")
	return strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";")
}

// iniProfileLine recognises " [ type name ] ; comment", indented or not.
func iniProfileLine(line string) (string, bool) {
	t, _, _ := strings.Cut(line, "#")
	t, _, _ = strings.Cut(t, ";")
	t = strings.TrimSpace(t)
	if !strings.HasPrefix(t, "[") || !strings.HasSuffix(t, "]") {
		return "", false
	}
	typ, name := splitINIProfile(strings.TrimSpace(t[1 : len(t)-1]))
	if typ != "" {
		return typ + " " + name, true
	}
	return name, true
}

// splitINIProfile splits "type name" at the first run of blanks.
func splitINIProfile(s string) (string, string) {
	first := 0
	for i, r := range s {
		if r == ' ' || r == '\t' {
			if first == 0 {
				first = i
			}
		} else if first != 0 {
			return s[:first], s[i:]
		}
	}
	if first == 0 {
		return "", s
	}
	return "", ""
}

// trimINIComment drops an inline comment: '#' or ';' after a blank.
func trimINIComment(s string) string {
	for _, sep := range []string{" #", " ;", "\t#", "\t;"} {
		s, _, _ = strings.Cut(s, sep)
	}
	return s
}

// splitINIProperty splits at '=' or, when it comes first, ':' (legacy).
func splitINIProperty(s string) (string, string, bool) {
	eq, colon := strings.Index(s, "="), strings.Index(s, ":")
	sep := "="
	if eq == -1 || colon != -1 && colon < eq {
		sep = ":"
	}
	k, v, ok := strings.Cut(s, sep)
	if !ok {
		return "", "", false
	}
	return strings.TrimSpace(k), strings.TrimSpace(v), true
}

// unquoteINI removes one pair of surrounding single or double quotes.
func unquoteINI(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// configProfiles keeps the config file's sections the SDK keeps, renaming
// "profile NAME" to NAME; "[profile default]" replaces "[default]".
func configProfiles(sections map[string]*iniSection) {
	skip := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(sections)) {
		if skip[name] {
			continue
		}
		switch {
		case strings.HasPrefix(name, "profile "):
			s, ok := sections[name]
			if !ok {
				continue
			}
			delete(sections, name)
			renamed := strings.TrimPrefix(name, "profile ")
			sections[renamed] = s
			skip[renamed] = true
		case strings.HasPrefix(name, "sso-session "), strings.HasPrefix(name, "services "), strings.EqualFold(name, "default"):
		default:
			delete(sections, name) // a profile without the "profile " prefix
		}
	}
}

// credentialsProfiles drops the credentials file's "profile NAME" sections.
func credentialsProfiles(sections map[string]*iniSection) {
	for name := range sections {
		if strings.HasPrefix(name, "profile ") {
			delete(sections, name)
		}
	}
}

// Keys of the shared files that phase-sidecar reads or refuses.
const (
	keyAccessKeyID     = "aws_access_key_id"
	keySecretAccessKey = "aws_secret_access_key"
	keySessionToken    = "aws_session_token"
	keyRegion          = "region"
)

// mergedStringKeys are the keys a credentials-file section overrides in the
// config file's section of the same name (mergeSections' stringKeys).
var mergedStringKeys = []string{
	"role_arn", "source_profile", "credential_source", "external_id", "mfa_serial", "role_session_name",
	keyRegion, "endpoint_discovery_enabled", "credential_process", "web_identity_token_file",
	"s3_use_arn_region", "s3_disable_multiregion_access_points", "ec2_metadata_service_endpoint_mode",
	"ec2_metadata_service_endpoint", "ec2_metadata_v1_disabled", "use_dualstack_endpoint", "use_fips_endpoint",
	"defaults_mode", "retry_mode", "ca_bundle", "duration_seconds", "max_attempts",
	"sso_session", "sso_account_id", "sso_region", "sso_role_name", "sso_start_url",
	"auth_scheme_preference", "login_session",
}

// mergeINISection overlays the credentials file's section on the config
// file's: the key pair (and token) only when both keys are there, then the
// listed keys; the credentials file's partial-key verdict wins. Either may
// be nil.
func mergeINISection(config, creds *iniSection) *iniSection {
	switch {
	case config == nil:
		return creds
	case creds == nil:
		return config
	}
	m := &iniSection{values: maps.Clone(config.values), partial: creds.partial}
	if creds.has(keyAccessKeyID) && creds.has(keySecretAccessKey) {
		m.values[keyAccessKeyID] = creds.values[keyAccessKeyID]
		m.values[keySecretAccessKey] = creds.values[keySecretAccessKey]
		if v, ok := creds.values[keySessionToken]; ok {
			m.values[keySessionToken] = v
		}
	}
	for _, k := range mergedStringKeys {
		if v, ok := creds.values[k]; ok {
			m.values[k] = v
		}
	}
	return m
}
