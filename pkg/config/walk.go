package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/phase-sidecar/phase-sidecar/pkg/reload"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/awsregion"
)

// Defaults. Every one is documented in docs/config.md.
const (
	DefaultListen      = ":9102"
	DefaultRefresh     = time.Minute
	DefaultMode        = 0o440
	DefaultMaxFileSize = 1 << 20
	DefaultConcurrency = 8
	// DefaultJWTFile is the Kubernetes service-account token, the default
	// jwt_file of the kubernetes auth method.
	DefaultJWTFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

const maxID = math.MaxInt32

// minRefresh is the shortest refresh and sources.file.recheck interval.
// Reload timings and timeouts have no such floor: milliseconds are
// legitimate there.
const minRefresh = time.Second

const (
	whyMinRefresh = "every refresh is a request to the source (AWS bills per call)"
	whyMinRecheck = "every recheck reads and hashes every file ref"
)

func (d *decoder) config(root *yaml.Node) *Config {
	c := &Config{
		Output:      Output{Mode: DefaultMode, UID: -1, GID: -1},
		Listen:      DefaultListen,
		Refresh:     DefaultRefresh,
		MaxFileSize: DefaultMaxFileSize,
		Concurrency: DefaultConcurrency,
		Readiness:   ReadinessStrict,
		Splay:       DefaultSplay,
		Breaker:     Breaker{Threshold: DefaultBreakerThreshold, Cap: DefaultBreakerCap},
	}
	root = resolve(root)
	m := d.newMapping(root, "", "")

	out, _ := m.sub("output")
	d.output(&out, &c.Output, m.present("output"))
	if v := m.str("listen", &c.Listen); v != nil {
		d.listen(v, c.Listen)
	}
	m.durationAtLeast("refresh", &c.Refresh, minRefresh, whyMinRefresh)
	m.duration("max_stale", &c.MaxStale)
	m.size("max_file_size", &c.MaxFileSize)
	m.integer("concurrency", &c.Concurrency, 1, 1024)
	if v := m.str("readiness", &c.Readiness); v != nil && c.Readiness != ReadinessStrict && c.Readiness != ReadinessServeExpired {
		d.errorf(v, "readiness", "want strict (an expired value makes a required secret not ready) or serve_expired, got %q", c.Readiness)
		c.Readiness = ReadinessStrict
	}
	if v := m.number("splay", &c.Splay, 0); v != nil && c.Splay > 1 {
		d.errorf(v, "splay", "want a fraction of the refresh interval from 0 (no splay) to 1 (default: the first refresh anywhere in the first interval), got %g", c.Splay)
		c.Splay = DefaultSplay
	}
	br, _ := m.sub("breaker")
	d.breaker(&br, &c.Breaker)
	src, _ := m.sub("sources")
	d.sources(&src, &c.Sources)
	list, items := m.items("secrets")
	d.secrets(list, items, c)
	rl, _ := m.sub("reload")
	d.reload(&rl, &c.Reload)
	m.done()

	switch {
	case d.recording():
	case list != nil && len(items) == 0:
		d.errorf(list, "secrets", "want at least one secret, with name and ref")
	case m.n != nil && list == nil && !m.present("secrets"):
		d.errorf(root, "secrets", "required: a list of secrets, each with name and ref")
	}
	// AWS needs nothing configured: region and credentials have defaults.
	// Vault needs an address, which may come from VAULT_ADDR: the caller
	// checks that, using Kinds.
	for _, k := range c.Kinds() {
		switch {
		case (k == sources.AWSSM || k == sources.AWSSSM) && c.Sources.AWS == nil:
			c.Sources.AWS = &AWS{Credentials: "imds"}
		case k == sources.Vault && c.Sources.Vault == nil:
			c.Sources.Vault = &Vault{Timeout: 30 * time.Second, Auth: VaultAuth{Method: "token"}}
		}
	}
	return c
}

// Scheduling defaults.
const (
	DefaultSplay            = 1.0
	DefaultBreakerThreshold = 3
	DefaultBreakerCap       = 5 * time.Minute
)

// breaker decodes breaker.
func (d *decoder) breaker(m *mapping, b *Breaker) {
	m.integer("threshold", &b.Threshold, 1, 1000)
	if v := m.duration("cap", &b.Cap); v != nil && b.Cap < time.Second {
		d.errorf(v, m.field("cap"), "want at least 1s: the breaker's probes back off from 1s up to the cap, got %q", v.Value)
		b.Cap = DefaultBreakerCap
	}
	m.done()
}

// output decodes output; given says the key is present (maybe mistyped).
func (d *decoder) output(m *mapping, o *Output, given bool) {
	if v := m.absPath("dir", &o.Dir); v != nil {
		o.Dir = filepath.Clean(o.Dir)
		if strings.ContainsFunc(o.Dir, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			// As in file names: env prints every path, and a line break
			// would end a comment line or a quoted value there.
			d.errorf(v, "output.dir", "contains a control character (below 0x20, or 0x7f), which would break env's output; want a plain path, got %q", o.Dir)
		}
	} else if !m.present("dir") && (m.n != nil || !given) {
		n := m.n
		if n == nil {
			n = m.d.rootPos()
		}
		d.errorf(n, "output.dir", "required: the absolute path of the directory the secrets are written to, on tmpfs (such as /run/secrets)")
	}
	m.boolean("allow_disk", &o.AllowDisk)
	m.mode("mode", &o.Mode)
	m.integer("uid", &o.UID, 0, maxID)
	m.integer("gid", &o.GID, 0, maxID)
	m.done()
}

// rootPos is a position for problems about an absent section: the start of
// the file.
func (d *decoder) rootPos() *yaml.Node { return &yaml.Node{Line: 1, Column: 1} }

func (d *decoder) listen(v *yaml.Node, addr string) {
	_, port, err := net.SplitHostPort(addr)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil || p < 0 || p > 65535 {
		d.errorf(v, "listen", "want HOST:PORT or :PORT such as \":9102\" or \"127.0.0.1:9102\", got %q", addr)
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// secrets decodes secrets[] and checks names and targets across entries.
func (d *decoder) secrets(list *yaml.Node, items []*yaml.Node, c *Config) {
	c.Secrets = make([]Secret, 0, len(items))
	d.tmpls, d.inputOnly = map[int]tmplInfo{}, map[int]*yaml.Node{}
	type seen struct {
		i    int
		line int
	}
	names := make(map[string]seen, len(items))
	targets := make(map[string]seen, len(items)) // plain files and bundle members
	bundles := make(map[string]seen)
	for i, n := range items {
		s, nameN, targetN, bundleN := d.secret(resolve(n), i, c)
		if nameN != nil && nameRE.MatchString(s.Name) {
			if p, dup := names[s.Name]; dup {
				d.errorf(nameN, itemField(i, ".name"), "duplicate secret name %q (first at secrets[%d], line %d)", s.Name, p.i, p.line)
				if targetN == nameN {
					targetN = nil // the same target follows; one error is enough
				}
			} else {
				names[s.Name] = seen{i, nameN.Line}
			}
		}
		if targetN != nil {
			t := s.Target()
			here := seen{i, s.Pos.Line}
			if p, dup := targets[t]; dup {
				d.errorf(targetN, itemField(i, ""), "target file %q is also written by secrets[%d] (line %d); set file: (or bundle:) to tell them apart", t, p.i, p.line)
			} else {
				targets[t] = here
			}
			if s.Bundle == "" {
				if p, clash := bundles[s.File]; clash {
					d.errorf(targetN, itemField(i, ""), "target file %q has the name of the bundle directory of secrets[%d] (line %d)", s.File, p.i, p.line)
				}
			} else if bundleN != nil {
				if p, clash := targets[s.Bundle]; clash {
					d.errorf(bundleN, itemField(i, ".bundle"), "bundle directory %q has the name of the target file of secrets[%d] (line %d)", s.Bundle, p.i, p.line)
				}
				if _, ok := bundles[s.Bundle]; !ok {
					bundles[s.Bundle] = here
				}
			}
		}
		c.Secrets = append(c.Secrets, s)
	}
	d.bundleDirs(c.Secrets)
	d.templateInputs(c.Secrets)
}

// bundleDirs checks that a bundle with a directory member (file:///dir/)
// takes its other file members from that same directory: the file source
// reads a bundle from one generation of one volume, and two volumes have
// no common generation.
func (d *decoder) bundleDirs(secrets []Secret) {
	dirs := map[string]int{} // bundle → index of its first directory member
	for i, s := range secrets {
		if s.Bundle != "" && s.Ref.Kind == sources.File && strings.HasSuffix(s.Ref.Path, "/") {
			if _, ok := dirs[s.Bundle]; !ok {
				dirs[s.Bundle] = i
			}
		}
	}
	for i, s := range secrets {
		first, ok := dirs[s.Bundle]
		if !ok || i == first || s.Ref.Kind != sources.File || s.RefPos.Line == 0 {
			continue
		}
		dir := filepath.Clean(secrets[first].Ref.Path)
		p := filepath.Clean(s.Ref.Path)
		if p == dir || filepath.Dir(p) == dir {
			continue
		}
		d.errorf(&yaml.Node{Line: s.RefPos.Line, Column: s.RefPos.Column}, itemField(i, ".ref"),
			"bundle %q reads the directory %q (secrets[%d], line %d), but ref %q is in another directory; a bundle is read from one generation of one directory: move this secret to a bundle of its own, or name files of %q",
			s.Bundle, dir+"/", first, secrets[first].Pos.Line, s.Ref.String(), dir+"/")
	}
}

// itemField is the field path of secrets[i] and sub ("", ".name").
func itemField(i int, sub string) string { return "secrets[" + strconv.Itoa(i) + "]" + sub }

// secret decodes one entry. It returns the nodes that name it and its
// target (nil when invalid) for the checks across entries.
func (d *decoder) secret(n *yaml.Node, i int, c *Config) (s Secret, nameN, targetN, bundleN *yaml.Node) {
	path := "secrets[" + strconv.Itoa(i) + "]"
	m := d.newMapping(n, path, "secrets[]")
	s = Secret{
		Required:    true,
		Reload:      true,
		Refresh:     c.Refresh,
		Mode:        c.Output.Mode,
		UID:         c.Output.UID,
		GID:         c.Output.GID,
		Newline:     "keep",
		OnExpiry:    OnExpiryKeep,
		RenewMargin: Margin{Fraction: DefaultRenewMargin},
	}
	if n != nil {
		s.Pos = Pos{Line: n.Line, Column: n.Column}
	}
	at := n
	if at == nil {
		at = d.rootPos()
	}

	nameN = m.str("name", &s.Name)
	switch {
	case nameN == nil:
		if !m.present("name") {
			d.errorf(at, path+".name", "required: the app's variable without _FILE, such as DATABASE_PASSWORD")
		}
	case !nameRE.MatchString(s.Name):
		d.errorf(nameN, path+".name", "want a variable name matching ^[A-Za-z_][A-Za-z0-9_]*$ (without _FILE), got %q", s.Name)
		nameN = nil
	}

	var ref string
	refN := m.str("ref", &ref)
	tmplN := m.str("template", &s.Template)
	tfileN := m.absPath("template_file", &s.TemplateFile)
	switch {
	case tmplN != nil && tfileN != nil:
		d.errorf(tfileN, path+".template_file", "set template or template_file, not both")
		tfileN = nil
	case (tmplN != nil || tfileN != nil) && refN != nil:
		d.errorf(refN, path+".ref", "a secret has a ref or a template, not both; to use the ref's value in the template, give it a secret of its own (write: false if it needs no file) and read it with {{ secret \"NAME\" }}")
		refN = nil
	}
	switch {
	case tmplN != nil || tfileN != nil:
		d.template(tmplN, tfileN, path, i, &s, c.MaxFileSize)
		refN = nil
	case refN == nil:
		if !m.present("ref") && !m.present("template") && !m.present("template_file") {
			d.errorf(at, path+".ref", "required: where the value comes from, such as vault://secret/app#password, aws-sm://NAME#KEY, aws-ssm:///PARAM or file:///abs/path (or a template: rendered from other secrets)")
		}
	default:
		r, err := sources.ParseRef(ref)
		if err != nil {
			d.errorf(refN, path+".ref", "%v", err)
			refN = nil
		} else {
			s.Ref = r
			s.RefPos = Pos{Line: refN.Line, Column: refN.Column}
		}
	}

	fileN := m.str("file", &s.File)
	bundleN = m.str("bundle", &s.Bundle)
	m.boolean("required", &s.Required)
	m.durationAtLeast("refresh", &s.Refresh, minRefresh, whyMinRefresh)
	staleN := m.duration("max_stale", &s.MaxStale)
	m.mode("mode", &s.Mode)
	m.integer("uid", &s.UID, 0, maxID)
	m.integer("gid", &s.GID, 0, maxID)
	if v := m.str("newline", &s.Newline); v != nil && s.Newline != "keep" && s.Newline != "strip" && s.Newline != "add" {
		d.errorf(v, path+".newline", "want keep, strip or add, got %q", s.Newline)
	}
	m.boolean("reload", &s.Reload)
	write := true
	if wn := m.boolean("write", &write); wn != nil && !write {
		s.InputOnly = true
		d.inputOnly[i] = wn
	}
	if fn := m.str("format", &s.Format); fn != nil {
		switch {
		case s.Format != "json" && s.Format != "dotenv" && s.Format != "yaml":
			d.errorf(fn, path+".format", "want json, dotenv or yaml, got %q", s.Format)
			s.Format = ""
		case s.IsTemplate():
			d.errorf(fn, path+".format", "format renders a whole object read by a ref; a template writes what it renders: drop format")
		case refN != nil && s.Ref.Field != "":
			d.errorf(fn, path+".format", "format renders a whole object, but ref %q selects field %q: drop #%s, or drop format", s.Ref.String(), s.Ref.Field, s.Ref.Field)
		}
	}
	var margin string
	if v := m.str("renew_margin", &margin); v != nil {
		if mg, msg := parseMargin(margin); msg != "" {
			d.errorf(v, path+".renew_margin", "%s", msg)
		} else if life, ok := knownLifetime(s.Ref); ok && refN != nil && mg.Fixed >= life {
			d.errorf(v, path+".renew_margin", "renew_margin %s is not shorter than the certificate's ttl %s: it could never be met; use a shorter margin or a percentage such as \"20%%\"", margin, life)
		} else {
			s.RenewMargin = mg
		}
	}
	expiryN := m.str("on_expiry", &s.OnExpiry)
	if expiryN != nil && s.OnExpiry != OnExpiryKeep && s.OnExpiry != OnExpiryRemove {
		d.errorf(expiryN, path+".on_expiry", "want keep (leave an expired value in place) or remove (remove the file once the value expired and could not be replaced), got %q", s.OnExpiry)
		s.OnExpiry, expiryN = OnExpiryKeep, nil
	}
	m.done()

	if expiryN != nil && refN != nil && !mayExpire(s.Ref) {
		d.errorf(expiryN, path+".on_expiry", "ref %q has no expiry (only Vault leases and certificates expire); drop on_expiry", s.Ref.String())
	}

	if staleN == nil {
		s.MaxStale = c.MaxStale
		if s.MaxStale == 0 {
			s.MaxStale = 3 * s.Refresh
		}
	}

	targetN = fileN
	switch {
	case fileN == nil:
		targetN = nameN
		s.File = strings.ToLower(s.Name)
		if msg := badTargetName(s.File); nameN != nil && msg != "" {
			d.errorf(nameN, path+".name", "%s", fmt.Sprintf("the default file name, the lower-cased name %s, %s; set file: to a shorter name", quoteName(s.File), msg))
			targetN = nil
		}
	default:
		if msg := badTargetName(s.File); msg != "" {
			d.errorf(fileN, path+".file", "%s", fmt.Sprintf("file name %s %s", quoteName(s.File), msg))
			targetN = nil
		}
	}
	if bundleN != nil {
		msg := ""
		if err := sink.CheckBundleName(s.Bundle); err != nil {
			msg = err.Error()
		}
		if msg != "" {
			d.errorf(bundleN, path+".bundle", "%s", fmt.Sprintf("bundle name %s %s", quoteName(s.Bundle), msg))
			targetN, bundleN = nil, nil
		}
	}
	return s, nameN, targetN, bundleN
}

// DefaultRenewMargin is the default renew_margin: a tenth of the lifetime.
const DefaultRenewMargin = 0.1

// parseMargin reads renew_margin: a duration ("5m") or a percentage of the
// lifetime below 100 ("10%"). It returns a message on error.
func parseMargin(s string) (Margin, string) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f <= 0 || f >= 100 || math.IsNaN(f) {
			// 0% would read as "no margin" but the reload's own time is
			// always kept; a zero fraction means the default here.
			return Margin{}, fmt.Sprintf("want a percentage of the lifetime above 0%% and below 100%% (such as \"10%%\"), got %q", s)
		}
		return Margin{Fraction: f / 100}, ""
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Margin{}, fmt.Sprintf("want a positive duration (such as \"5m\") or a percentage of the lifetime (such as \"10%%\"), got %q", s)
	}
	return Margin{Fixed: d}, ""
}

// knownLifetime is the lifetime a ref states itself: the ttl of a PKI
// issue ref.
func knownLifetime(r sources.Ref) (time.Duration, bool) {
	if !r.IsPKIIssue() {
		return 0, false
	}
	d, err := time.ParseDuration(r.Param("ttl"))
	return d, err == nil && d > 0
}

// mayExpire reports whether values of r can carry an expiry: Vault (leases,
// certificates) and files (a PEM certificate's NotAfter).
func mayExpire(r sources.Ref) bool {
	return r.Kind == sources.Vault || r.Kind == sources.File
}

// quoteName quotes a file or bundle name for a message, cut short when
// long.
func quoteName(name string) string {
	const limit = 40
	if len(name) <= limit {
		return strconv.Quote(name)
	}
	return strconv.Quote(name[:limit]) + fmt.Sprintf("… (%d bytes)", len(name))
}

// badTargetName says why name cannot be a target file or directory name
// (sink's one rule), or "".
func badTargetName(name string) string {
	if err := sink.CheckName(name); err != nil {
		return err.Error()
	}
	return ""
}

func (d *decoder) sources(m *mapping, s *Sources) {
	s.File.Recheck = time.Minute
	fm, _ := m.sub("file")
	fm.durationAtLeast("recheck", &s.File.Recheck, minRefresh, whyMinRecheck)
	fm.done()
	if vm, walk := m.sub("vault"); walk {
		s.Vault = d.vault(&vm)
	}
	if am, walk := m.sub("aws"); walk {
		s.AWS = d.aws(&am)
	}
	m.done()
}

func (d *decoder) vault(m *mapping) *Vault {
	v := &Vault{Timeout: 30 * time.Second}
	if n := m.str("address", &v.Address); n != nil {
		d.checkURL(n, m.field("address"), v.Address, "https://vault.example:8200")
	}
	m.absPath("ca_cert", &v.CACert)
	cert := m.absPath("client_cert", &v.ClientCert)
	key := m.absPath("client_key", &v.ClientKey)
	switch {
	case cert != nil && key == nil:
		d.errorf(cert, m.field("client_key"), "required with client_cert: the path of the client certificate's key")
	case key != nil && cert == nil:
		d.errorf(key, m.field("client_cert"), "required with client_key: the path of the client certificate")
	}
	m.str("tls_server_name", &v.TLSServerName)
	m.str("namespace", &v.Namespace)
	m.duration("timeout", &v.Timeout)
	m.integer("kv_version", &v.KVVersion, 0, 2)
	if n := m.number("rate_limit", &v.RateLimit, 0); n != nil && v.RateLimit <= 0 {
		d.errorf(n, m.field("rate_limit"), "want a positive number of requests per second (leave it out for no limit), got %g", v.RateLimit)
		v.RateLimit = 0
	}
	burstN := m.integer("rate_burst", &v.RateBurst, 1, 1_000_000)
	if burstN != nil && v.RateLimit == 0 {
		d.errorf(burstN, m.field("rate_burst"), "needs rate_limit: the burst is the number of requests allowed at once above the rate")
	}
	if v.RateLimit > 0 && v.RateBurst == 0 {
		v.RateBurst = max(1, int(math.Ceil(v.RateLimit)))
	}
	am, _ := m.sub("auth")
	d.vaultAuth(&am, &v.Auth)
	m.done()
	return v
}

// authMethods lists, per Vault auth method, the fields it needs and the
// ones it also accepts. The required ones are those the Vault source
// refuses to start without (pkg/sources/vault/auth.go, newAuth).
var authMethods = map[string]struct{ required, optional []string }{
	"token":      {optional: []string{"token_file"}},
	"approle":    {required: []string{"role_id_file", "secret_id_file"}, optional: []string{"mount", "wrapped_secret_id"}},
	"kubernetes": {required: []string{"role"}, optional: []string{"mount", "jwt_file"}},
	"jwt":        {required: []string{"role", "jwt_file"}, optional: []string{"mount"}},
	"aws":        {required: []string{"role"}, optional: []string{"mount", "server_id_header", "sts_region", "sts_endpoint"}},
}

var authMethodNames = []string{"token", "approle", "kubernetes", "jwt", "aws"}

// authFieldHints says what a required auth field holds.
var authFieldHints = map[string]string{
	"role_id_file":   "the absolute path of the file holding the role ID",
	"secret_id_file": "the absolute path of the file holding the secret ID (or, with wrapped_secret_id: true, its wrapping token)",
	"role":           "the Vault role to log in as",
	"jwt_file":       "the absolute path of the file holding the JWT",
}

func (d *decoder) vaultAuth(m *mapping, a *VaultAuth) {
	a.Method = "token"
	methodN := m.str("method", &a.Method)
	given := map[string]*yaml.Node{
		"mount":             m.str("mount", &a.Mount),
		"token_file":        m.absPath("token_file", &a.TokenFile),
		"role_id_file":      m.absPath("role_id_file", &a.RoleIDFile),
		"secret_id_file":    m.absPath("secret_id_file", &a.SecretIDFile),
		"wrapped_secret_id": m.boolean("wrapped_secret_id", &a.WrappedSecretID),
		"role":              m.str("role", &a.Role),
		"jwt_file":          m.absPath("jwt_file", &a.JWTFile),
		"server_id_header":  m.str("server_id_header", &a.ServerIDHeader),
		"sts_region":        m.str("sts_region", &a.STSRegion),
		"sts_endpoint":      m.str("sts_endpoint", &a.STSEndpoint),
	}
	m.done()
	spec, ok := authMethods[a.Method]
	if !ok {
		d.errorf(methodN, m.field("method"), "unknown auth method %q; want one of %s", a.Method, strings.Join(authMethodNames, ", "))
		return
	}
	at := m.n
	if at == nil {
		at = d.rootPos()
	}
	for _, f := range spec.required {
		if given[f] == nil && !m.present(f) {
			d.errorf(at, m.field(f), "required by auth method %s: %s", a.Method, authFieldHints[f])
		}
	}
	takes := append(slices.Clone(spec.required), spec.optional...)
	slices.Sort(takes)
	for _, f := range slices.Sorted(mapsKeys(given)) {
		if n := given[f]; n != nil && !slices.Contains(takes, f) {
			d.errorf(n, m.field(f), "not used by auth method %s, which takes %s", a.Method, strings.Join(takes, ", "))
		}
	}
	if n := given["mount"]; n != nil && (a.Mount == "" || strings.Trim(a.Mount, "/") != a.Mount || strings.Contains(a.Mount, "//")) {
		d.errorf(n, m.field("mount"), "want a mount path such as %q, without leading or trailing slashes, got %q", a.Method, a.Mount)
	}
	if n := given["sts_region"]; n != nil && !awsregion.Valid(a.STSRegion) {
		d.errorf(n, m.field("sts_region"), "want an AWS region such as eu-west-1, got %q", a.STSRegion)
	}
	if n := given["sts_endpoint"]; n != nil {
		d.checkSTSEndpoint(n, m.field("sts_endpoint"), a.STSEndpoint)
		if given["sts_region"] == nil && !m.present("sts_region") {
			d.errorf(n, m.field("sts_region"), "required with sts_endpoint: the region the endpoint's requests are signed for, as in Vault's sts_region")
		}
	}
	if a.Mount == "" && a.Method != "token" {
		a.Mount = a.Method
	}
	if a.Method == "kubernetes" && a.JWTFile == "" {
		a.JWTFile = DefaultJWTFile
	}
}

func mapsKeys(m map[string]*yaml.Node) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkURL checks an http or https URL. Messages quote only its redacted
// form: a URL may carry credentials in its userinfo or query.
func (d *decoder) checkURL(n *yaml.Node, field, raw, example string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		d.errorf(n, field, "want an http:// or https:// URL such as %s, got %q", example, secret.RedactURL(raw))
	case u.User != nil:
		d.errorf(n, field, "credentials in the URL are not accepted, got %q; send them in a header", secret.RedactURL(raw))
	}
}

// checkSTSEndpoint checks the STS endpoint of Vault's aws login. The
// request addressed to it is signed with AWS credentials, so it must be
// https, or http to this host only (a local emulator or proxy); Vault's
// replay keeps neither userinfo, query nor fragment.
func (d *decoder) checkSTSEndpoint(n *yaml.Node, field, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && (u.Scheme != "http" || !loopbackName(u.Hostname()))):
		d.errorf(n, field, "want an https:// URL such as https://sts.eu-west-1.amazonaws.com (http:// only to 127.0.0.1, ::1 or localhost), got %q", secret.RedactURL(raw))
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(raw, "#"):
		d.errorf(n, field, "want an endpoint URL without credentials, query or fragment, got %q", secret.RedactURL(raw))
	}
}

func loopbackName(host string) bool {
	return host == "127.0.0.1" || host == "::1" || host == "localhost"
}

var (
	// Lengths are checked apart: a bounded repetition such as {1,512}
	// compiles into that many states (350 KB of heap for the life of the
	// process, measured).
	roleARNRE    = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	externalIDRE = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	sessionRE    = regexp.MustCompile(`^[\w+=,.@-]+$`)
)

// roleARNOK: an IAM role ARN whose path and name are at most 512 characters.
func roleARNOK(s string) bool {
	_, name, _ := strings.Cut(s, ":role/")
	return len(name) <= 512 && roleARNRE.MatchString(s)
}

// sessionOK: 2 to 64 characters from letters, digits and _+=,.@-.
func sessionOK(s string) bool { return len(s) >= 2 && len(s) <= 64 && sessionRE.MatchString(s) }

func (d *decoder) aws(m *mapping) *AWS {
	a := &AWS{Credentials: "imds"}
	if n := m.str("region", &a.Region); n != nil && !awsregion.Valid(a.Region) {
		d.errorf(n, m.field("region"), "want an AWS region such as eu-west-1, got %q", a.Region)
	}
	if n := m.str("credentials", &a.Credentials); n != nil && a.Credentials != "imds" && a.Credentials != "default" {
		d.errorf(n, m.field("credentials"), "want imds (the EC2 instance role over IMDSv2) or default (environment keys, web identity, a shared profile's static keys, container credentials, then IMDSv2), got %q", a.Credentials)
	}
	if rm, walk := m.sub("assume_role"); walk {
		r := &AssumeRole{SessionName: "phase-sidecar", Duration: time.Hour}
		switch n := rm.str("role_arn", &r.RoleARN); {
		case n == nil:
			if rm.present("role_arn") {
				break
			}
			at := rm.n
			if at == nil {
				at = d.rootPos()
			}
			d.errorf(at, rm.field("role_arn"), "required: the role to assume, such as arn:aws:iam::123456789012:role/phase")
		case !roleARNOK(r.RoleARN):
			d.errorf(n, rm.field("role_arn"), "want an IAM role ARN such as arn:aws:iam::123456789012:role/phase, got %q", r.RoleARN)
		}
		if n := rm.str("external_id", &r.ExternalID); n != nil && (len(r.ExternalID) < 2 || len(r.ExternalID) > 1224 || !externalIDRE.MatchString(r.ExternalID)) {
			d.errorf(n, rm.field("external_id"), "want 2 to 1224 characters from letters, digits and _+=,.@:/-")
		}
		if n := rm.str("session_name", &r.SessionName); n != nil && !sessionOK(r.SessionName) {
			d.errorf(n, rm.field("session_name"), "want 2 to 64 characters from letters, digits and _+=,.@-, got %q", r.SessionName)
		}
		if n := rm.duration("duration", &r.Duration); n != nil && (r.Duration < 15*time.Minute || r.Duration > 12*time.Hour) {
			d.errorf(n, rm.field("duration"), "want a duration from 15m to 12h, got %q", n.Value)
		}
		if n := rm.str("source_identity", &r.SourceIdentity); n != nil && !sessionOK(r.SourceIdentity) {
			d.errorf(n, rm.field("source_identity"), "want 2 to 64 characters from letters, digits and _+=,.@-, got %q", r.SourceIdentity)
		}
		rm.done()
		a.AssumeRole = r
	}
	m.number("rate_limit", &a.RateLimit, 0)
	m.done()
	return a
}

var (
	httpMethodRE = regexp.MustCompile(`^[A-Z]{1,16}$`)
	headerNameRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
)

func (d *decoder) reload(m *mapping, r *Reload) {
	r.Coalesce = time.Second
	r.MaxWait = 10 * time.Second
	var methods []*yaml.Node // the key nodes of the methods given
	if sm, walk := m.sub("signal"); walk {
		r.Signal = d.signal(&sm)
		methods = append(methods, sm.n)
	}
	if hm, walk := m.sub("http"); walk {
		r.HTTP = d.httpReload(&hm)
		methods = append(methods, hm.n)
	}
	if em, walk := m.sub("exec"); walk {
		r.Exec = d.exec(&em)
		methods = append(methods, em.n)
	}
	r.Supervise = Supervise{Signal: "SIGHUP", StopSignal: "SIGTERM", StopTimeout: reload.DefaultStopTimeout}
	if sv, walk := m.sub("supervise"); walk {
		d.supervise(&sv, &r.Supervise)
		if sv.n != nil && len(methods) > 0 && !d.recording() {
			d.errorf(sv.n, "reload.supervise", "reload.supervise is how `run -- APP` tells the app it starts itself; with signal, http or exec set too the app would be told twice, and run refuses it: keep supervise (and start the app after --) or the other method")
		}
	}
	if len(methods) > 1 && !d.recording() {
		d.errorf(methods[1], "reload", "set at most one of signal, http and exec")
	}
	coalesceN := m.duration("coalesce", &r.Coalesce)
	waitN := m.duration("max_wait", &r.MaxWait)
	if r.MaxWait < r.Coalesce {
		at := waitN
		if at == nil {
			at = coalesceN
		}
		d.errorf(at, "reload.max_wait", "want max_wait (%s) >= coalesce (%s)", r.MaxWait, r.Coalesce)
	}
	r.OnInitialSync = reload.OnInitialAuto
	if v := m.scalar("on_initial_sync", kString, "auto, always or never"); v != nil {
		switch val := strings.ToLower(v.Value); {
		case v.ShortTag() == "!!bool" && val == "true":
			r.OnInitialSync = reload.OnInitialAlways // the old boolean: true meant always
		case v.ShortTag() == "!!bool" && val == "false":
			r.OnInitialSync = reload.OnInitialAuto
		case v.Value == reload.OnInitialAuto || v.Value == reload.OnInitialAlways || v.Value == reload.OnInitialNever:
			r.OnInitialSync = v.Value
		default:
			d.errorf(v, "reload.on_initial_sync", "want auto (tell the app after the first sync only when it is already running), always or never (true and false still mean always and auto), got %q", v.Value)
		}
	}
	m.done()
}

// interpreterScript reports whether a process pattern is a bare script or
// subcommand name that only an interpreter's command line holds.
func interpreterScript(p string) bool {
	switch strings.ToLower(strings.TrimSpace(p)) {
	case "rqworker", "celery", "manage.py", "worker", "runserver", "server.js", "index.js", "app.py", "main.py", "wsgi.py", "rq":
		return true
	}
	return strings.HasSuffix(p, ".py") || strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".rb")
}

// signalName reads a signal name, normalised to its SIG… form; the table
// is pkg/reload's.
func (d *decoder) signalName(m *mapping, key string, dst *string) {
	if n := m.str(key, dst); n != nil {
		name, ok := reload.CanonicalSignal(*dst)
		if !ok {
			d.errorf(n, m.field(key), "want one of %s, got %q", strings.Join(reload.SignalNames(), ", "), *dst)
		}
		*dst = name
	}
}

func (d *decoder) supervise(m *mapping, s *Supervise) {
	d.signalName(m, "signal", &s.Signal)
	m.boolean("restart", &s.Restart)
	d.signalName(m, "stop_signal", &s.StopSignal)
	m.duration("stop_timeout", &s.StopTimeout)
	m.done()
}

func (d *decoder) signal(m *mapping) *Signal {
	s := &Signal{Name: "SIGHUP"}
	d.signalName(m, "name", &s.Name)
	pidN := m.absPath("pid_file", &s.PIDFile)
	procN := m.str("process", &s.Process)
	m.done()
	if procN != nil && interpreterScript(s.Process) {
		d.warnf(procN, m.field("process"), "process %q is a script run by an interpreter (python, node, …): its process name is the interpreter's, so only the command line can match it; say what the command line holds, such as \"manage.py rqworker\" or \"celery worker\"", s.Process)
	}
	switch {
	case !m.present("pid_file") && !m.present("process") && m.n != nil:
		d.errorf(m.n, m.path, "set pid_file (a file holding the app's pid) or process (the app's executable name)")
	case pidN != nil && procN != nil:
		d.errorf(procN, m.field("process"), "set pid_file or process, not both")
	case procN != nil && s.Process == "":
		d.errorf(procN, m.field("process"), "want the app's executable name, such as gunicorn")
	case procN != nil:
		if err := reload.CheckProcess(s.Process); err != nil {
			d.errorf(procN, m.field("process"), "%v (Go regexp syntax; an executable name such as gunicorn needs none)", err)
		}
	}
	return s
}

func (d *decoder) httpReload(m *mapping) *HTTP {
	h := &HTTP{Method: "POST", StatusMin: 200, StatusMax: 299, Timeout: 5 * time.Second, Retries: 3}
	if n := m.str("url", &h.URL); n != nil {
		d.checkURL(n, m.field("url"), h.URL, "http://127.0.0.1:8000/-/reload")
	} else if m.n != nil && !m.present("url") {
		d.errorf(m.n, m.field("url"), "required: the http:// or https:// URL to call")
	}
	if n := m.str("method", &h.Method); n != nil && !httpMethodRE.MatchString(h.Method) {
		d.errorf(n, m.field("method"), "want an HTTP method in capitals such as POST, got %q", h.Method)
	}
	var headers map[string]string
	if n := m.stringMap("headers", &headers); n != nil {
		h.Headers = make(map[string]secret.Value, len(headers))
		for k, v := range headers {
			h.Headers[k] = secret.FromString(v)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
			if !headerNameRE.MatchString(k.Value) {
				d.errorf(k, m.field("headers"), "want a header name of letters, digits and !#$%%&'*+-.^_`|~, got %q", k.Value)
			}
			if strings.ContainsAny(v.Value, "\x00\r\n") {
				// Never quote a header value: it may be a credential.
				d.errorf(v, m.field("headers")+"."+k.Value, "the value contains a line break or NUL")
			}
		}
	}
	minN := m.integer("status_min", &h.StatusMin, 100, 599)
	maxN := m.integer("status_max", &h.StatusMax, 100, 599)
	if h.StatusMin > h.StatusMax {
		at := maxN
		if at == nil {
			at = minN
		}
		d.errorf(at, m.field("status_max"), "want status_max (%d) >= status_min (%d)", h.StatusMax, h.StatusMin)
	}
	m.duration("timeout", &h.Timeout)
	m.integer("retries", &h.Retries, 0, 100)
	m.done()
	return h
}

func (d *decoder) exec(m *mapping) *Exec {
	e := &Exec{Timeout: 30 * time.Second}
	switch n := m.stringList("command", &e.Command); {
	case n == nil && m.n != nil && !m.present("command"):
		d.errorf(m.n, m.field("command"), "required: the command and its arguments as a list, such as [nginx, -s, reload]")
	case n != nil && (len(e.Command) == 0 || e.Command[0] == ""):
		d.errorf(n, m.field("command"), "want a non-empty list whose first element is the program, such as [nginx, -s, reload]")
	}
	m.duration("timeout", &e.Timeout)
	m.done()
	return e
}
