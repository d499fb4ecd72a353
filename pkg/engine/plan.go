package engine

import (
	"slices"
	"strings"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// job is the unit of scheduling: the source objects that must be read
// together (one object, or every object feeding one bundle) and the secrets
// they feed.
type job struct {
	objects []object
	secrets []*state
	schedule
}

// object is one source object, read once per cycle however many secrets
// select fields from it.
type object struct {
	key string // sources.Ref.Object()
	ref sources.Ref
}

// plan groups secrets into jobs: secrets that share an object share a job,
// and so do all objects that feed one bundle, so that a bundle is always
// published from values read in the same cycle.
func plan(secrets []*state) []*job {
	// Union-find over objects: each bundle joins the objects of its members.
	parent := map[string]string{}
	var find func(string) string
	find = func(k string) string {
		p, ok := parent[k]
		if !ok {
			return k
		}
		if p == k {
			return k
		}
		r := find(p)
		parent[k] = r
		return r
	}
	union := func(a, b string) {
		if ra, rb := find(a), find(b); ra != rb {
			parent[ra] = rb
		}
	}
	// A template is read in the cycle of the objects it reads, so a user
	// name and password from one lease are never mixed with another's.
	for _, s := range secrets {
		for _, in := range s.inputs {
			union(s.obj, in.obj)
		}
	}
	bundleObj := map[string]string{}
	for _, s := range secrets {
		if b := s.cfg.Bundle; b != "" {
			if first, ok := bundleObj[b]; ok {
				if a, z := find(s.obj), find(first); a != z {
					parent[a] = z
				}
			} else {
				bundleObj[b] = s.obj
			}
		}
	}
	byRoot := make(map[string]*job, len(secrets))
	jobs := make([]*job, 0, len(secrets))
	for _, s := range secrets {
		r := find(s.obj)
		j, ok := byRoot[r]
		if !ok {
			j = &job{}
			byRoot[r] = j
			jobs = append(jobs, j)
		}
		if !strings.HasPrefix(s.obj, inlineTemplate) && !slices.ContainsFunc(j.objects, func(o object) bool { return o.key == s.obj }) {
			j.objects = append(j.objects, object{key: s.obj, ref: s.cfg.Ref})
		}
		j.secrets = append(j.secrets, s)
		s.job = j
	}
	return jobs
}

// inlineTemplate prefixes the object key of an inline template, which
// reads no object of its own; no ref's key starts so.
const inlineTemplate = "template:"

// expandedName maps field key of an expanding secret (a directory, a
// recursive parameter path, a split Vault object) to its target file and
// variable: secret REDIS, field password → file redis_password, variable
// REDIS_PASSWORD. Characters outside [A-Za-z0-9_.-] become '_', and so does
// the second dot of "..", which no target name may contain.
func expandedName(prefix, key string) string {
	var b strings.Builder
	b.Grow(len(prefix) + 1 + len(key))
	b.WriteString(prefix)
	b.WriteByte('_')
	prev := '_'
	for _, r := range key {
		switch {
		case r == '.' && prev == '.':
			r = '_'
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
		default:
			r = '_'
		}
		b.WriteRune(r)
		prev = r
	}
	return b.String()
}
