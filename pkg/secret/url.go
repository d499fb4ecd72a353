package secret

import "strings"

// RedactURL returns raw without what may be a credential: the userinfo is
// removed, every query value and the fragment become REDACTED. It works on
// the text, so it also redacts what url.Parse refuses. It is the project's
// one URL redactor (config errors, reload logs and status).
func RedactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "", raw
	}
	rest, _, hasFrag := strings.Cut(rest, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	// Userinfo ends at the last @ before the query; a password may hold a /
	// so the authority's end cannot be trusted.
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	var b strings.Builder
	if ok {
		b.WriteString(scheme + "://")
	}
	b.WriteString(rest)
	if hasQuery {
		b.WriteByte('?')
		for i, kv := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			if k, _, ok := strings.Cut(kv, "="); ok {
				b.WriteString(k + "=REDACTED")
			} else if kv != "" {
				b.WriteString("REDACTED")
			}
		}
	}
	if hasFrag {
		b.WriteString("#REDACTED")
	}
	return b.String()
}
