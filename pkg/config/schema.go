package config

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/phase-sidecar/phase-sidecar/pkg/reload"
	"github.com/phase-sidecar/phase-sidecar/pkg/render"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/awsregion"
)

//go:generate go test -run TestSchemaFile -update .

// field documents one key for the JSON Schema. The keys themselves and their
// types come from the decoder (see acceptedKeys); a test checks that this
// table and the decoder agree.
type field struct {
	desc      string
	def       any      // default, or nil
	enum      []string // allowed values of a string
	pattern   string   // extra pattern for a string
	min, max  *int     // bounds of an integer
	maxLength int      // longest string, in characters; 0: no limit
	required  bool     // required inside its parent
}

func ptr(i int) *int { return &i }

// targetPattern approximates badTargetName: no leading dot, no slash or
// backslash, no control character. maxLength counts characters, not bytes,
// so the decoder's byte limit stays stricter.
const targetPattern = `^[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]*$`

// stsEndpointPattern approximates checkSTSEndpoint.
const stsEndpointPattern = `^(https://[^/?#@]+|http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?)(/[^?#]*)?$`

// sessionPattern is sessionOK as a JSON Schema pattern.
const sessionPattern = `^[\w+=,.@-]{2,64}$`

var fields = map[string]field{
	"output":            {desc: "Where the secrets are written.", required: true},
	"output.dir":        {desc: "Absolute path of the output directory; must be tmpfs or ramfs unless allow_disk is true.", required: true},
	"output.allow_disk": {desc: "Allow an output directory on disk (logs a warning at every start).", def: false},
	"output.mode":       {desc: "Default file mode of the targets, an octal string.", def: "0440"},
	"output.uid":        {desc: "Default owner of the targets; absent: leave as the sidecar's.", min: ptr(0), max: ptr(maxID)},
	"output.gid":        {desc: "Default group of the targets; absent: leave as the sidecar's.", min: ptr(0), max: ptr(maxID)},
	"listen":            {desc: "Address of /metrics, /healthz, /readyz and /v1/status.", def: DefaultListen},
	"refresh":           {desc: "Default refresh interval of static values; at least 1s.", def: "1m"},
	"max_stale":         {desc: "Default time after the last successful sync after which a secret is stale; absent: 3 × its refresh."},
	"max_file_size":     {desc: "Largest file the file source reads, in bytes or with a unit (\"1MiB\").", def: "1MiB"},
	"concurrency":       {desc: "Fetches in flight at once.", def: DefaultConcurrency, min: ptr(1), max: ptr(1024)},
	"splay":             {desc: "Fraction of its refresh interval over which each object's first refresh after the first sync is spread (0–1), so sidecars started together drift apart.", def: DefaultSplay, max: ptr(1)},
	"breaker":           {desc: "The circuit breaker that each remote source (Vault, Secrets Manager, SSM) has of its own: after threshold consecutive source-level failures (unreachable, timeouts, 5xx, 429, throttling) every job of the source waits, and one probe goes out per backoff period (1s doubling up to cap, full jitter)."},
	"breaker.threshold": {desc: "Consecutive source-level failures that open the breaker.", def: DefaultBreakerThreshold, min: ptr(1), max: ptr(1000)},
	"breaker.cap":       {desc: "Longest wait between probes while the breaker is open; at least 1s.", def: "5m"},
	"readiness":         {desc: "strict: a required secret whose only value has expired makes /readyz answer 503; serve_expired: it still counts as written.", def: ReadinessStrict, enum: []string{ReadinessStrict, ReadinessServeExpired}},

	"sources":                                 {desc: "Per-source settings."},
	"sources.file":                            {desc: "The mounted-file source (file:// refs)."},
	"sources.file.recheck":                    {desc: "Periodic hash re-check that catches missed file events; at least 1s.", def: "1m"},
	"sources.vault":                           {desc: "The Vault source (vault:// refs). Empty fields fall back to VAULT_ADDR, VAULT_CACERT and VAULT_NAMESPACE."},
	"sources.vault.address":                   {desc: "Vault URL; absent: VAULT_ADDR.", pattern: "^https?://"},
	"sources.vault.ca_cert":                   {desc: "CA certificate (PEM) to verify Vault; absent: VAULT_CACERT, then the system roots."},
	"sources.vault.client_cert":               {desc: "Client certificate (PEM) for mutual TLS; needs client_key."},
	"sources.vault.client_key":                {desc: "Key of client_cert."},
	"sources.vault.tls_server_name":           {desc: "Server name to verify in Vault's certificate."},
	"sources.vault.namespace":                 {desc: "Vault Enterprise namespace; absent: VAULT_NAMESPACE."},
	"sources.vault.timeout":                   {desc: "Timeout of one Vault request.", def: "30s"},
	"sources.vault.rate_limit":                {desc: "Requests per second across the Vault source, logins included; absent: unlimited."},
	"sources.vault.rate_burst":                {desc: "Requests allowed at once above rate_limit; default rate_limit rounded up."},
	"sources.vault.kv_version":                {desc: "KV engine version: 0 detects it per mount, 1 or 2 forces it.", def: 0, min: ptr(0), max: ptr(2)},
	"sources.vault.auth":                      {desc: "How the sidecar logs in to Vault."},
	"sources.vault.auth.method":               {desc: "Auth method.", def: "token", enum: authMethodNames},
	"sources.vault.auth.mount":                {desc: "Mount path of the auth method; default the method's name (not for token)."},
	"sources.vault.auth.token_file":           {desc: "token: file holding the token; absent: VAULT_TOKEN."},
	"sources.vault.auth.role_id_file":         {desc: "approle: file holding the role ID (required)."},
	"sources.vault.auth.secret_id_file":       {desc: "approle: file holding the secret ID, or its wrapping token (required)."},
	"sources.vault.auth.wrapped_secret_id":    {desc: "approle: secret_id_file holds a response-wrapping token.", def: false},
	"sources.vault.auth.role":                 {desc: "kubernetes, jwt and aws (required): the Vault role to log in as."},
	"sources.vault.auth.jwt_file":             {desc: "kubernetes: the service-account token (default " + DefaultJWTFile + "); jwt: the JWT file (required)."},
	"sources.vault.auth.server_id_header":     {desc: "aws: value of the X-Vault-AWS-IAM-Server-ID header."},
	"sources.vault.auth.sts_region":           {desc: "aws: the region the sts:GetCallerIdentity request is signed for, as in the mount's sts_region; absent: us-east-1 (the global endpoint). Required with sts_endpoint.", pattern: awsregion.Pattern},
	"sources.vault.auth.sts_endpoint":         {desc: "aws: the STS endpoint the request is addressed to, as in the mount's sts_endpoint (https, or http to 127.0.0.1, ::1 or localhost); absent: the regional endpoint of sts_region, else https://sts.amazonaws.com.", pattern: stsEndpointPattern},
	"sources.aws":                             {desc: "The AWS source (aws-sm:// and aws-ssm:// refs); optional, every field has a default."},
	"sources.aws.region":                      {desc: "AWS region; absent: AWS_REGION, then the instance's region from IMDS.", pattern: awsregion.Pattern},
	"sources.aws.credentials":                 {desc: "Base credentials: imds (the EC2 instance role over IMDSv2) or default (environment keys, web identity, a shared profile's static keys, container credentials, then IMDSv2).", def: "imds", enum: []string{"imds", "default"}},
	"sources.aws.rate_limit":                  {desc: "Requests per second across the AWS source; 0 is unlimited.", def: 0},
	"sources.aws.assume_role":                 {desc: "STS AssumeRole on top of the base credentials."},
	"sources.aws.assume_role.role_arn":        {desc: "The role to assume.", pattern: `^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`, required: true},
	"sources.aws.assume_role.external_id":     {desc: "External ID the role's trust policy requires.", pattern: externalIDRE.String()},
	"sources.aws.assume_role.session_name":    {desc: "Role session name.", def: "phase-sidecar", pattern: sessionPattern},
	"sources.aws.assume_role.duration":        {desc: "Session duration, from 15m to 12h.", def: "1h"},
	"sources.aws.assume_role.source_identity": {desc: "Source identity set on the session.", pattern: sessionPattern},

	"secrets":                 {desc: "The secrets to deliver.", required: true},
	"secrets[].name":          {desc: "The app's variable without _FILE; the app reads NAME_FILE.", pattern: nameRE.String(), required: true},
	"secrets[].ref":           {desc: "Where the value comes from: file:///abs/path, vault://MOUNT/PATH#FIELD, aws-sm://NAME#KEY, aws-ssm:///PARAM.", pattern: "^(file|vault|aws-sm|aws-ssm)://"},
	"secrets[].template":      {desc: "A Go text/template rendered instead of a ref's value; {{ secret \"NAME\" }} is another secret's value. Functions: " + strings.Join(render.Funcs, ", ") + ", and the template package's built-ins. See docs/templates.md."},
	"secrets[].template_file": {desc: "The same template read from a file (re-read when it changes), at most max_file_size."},
	"secrets[].write":         {desc: "false: an input-only secret, fetched and usable in templates, with no file and no NAME_FILE line.", def: true},
	"secrets[].format":        {desc: "How a whole object (a ref without #field) is written: json, dotenv (KEY='value' lines) or yaml; absent: as the source gives it.", enum: []string{"json", "dotenv", "yaml"}},
	"secrets[].file":          {desc: "Target file name in output.dir (or in the bundle), at most 255 bytes; default the lower-cased name.", pattern: targetPattern, maxLength: sink.MaxName},
	"secrets[].bundle":        {desc: "Bundle directory, at most 232 bytes: the members of a bundle are published together.", pattern: targetPattern, maxLength: sink.MaxBundle},
	"secrets[].required":      {desc: "Readiness and `once` wait for this secret.", def: true},
	"secrets[].refresh":       {desc: "Refresh interval, at least 1s; default the top-level refresh."},
	"secrets[].max_stale":     {desc: "Staleness threshold; default the top-level max_stale, else 3 × refresh."},
	"secrets[].mode":          {desc: "File mode; default output.mode."},
	"secrets[].uid":           {desc: "Owner; default output.uid.", min: ptr(0), max: ptr(maxID)},
	"secrets[].gid":           {desc: "Group; default output.gid.", min: ptr(0), max: ptr(maxID)},
	"secrets[].renew_margin":  {desc: "Room kept before an expiring value's end, on top of the reload's time, when its replacement is scheduled: a duration or a percentage of the lifetime.", def: "10%", pattern: `^(([0-9]+(\.[0-9]*)?|\.[0-9]+)%|` + durationPattern[1:len(durationPattern)-1] + `)$`},
	"secrets[].on_expiry":     {desc: "keep an expired value that could not be replaced, or remove its file so the app fails loudly.", def: OnExpiryKeep, enum: []string{OnExpiryKeep, OnExpiryRemove}},
	"secrets[].newline":       {desc: "keep the value byte for byte, strip trailing line breaks, or add exactly one.", def: "keep", enum: []string{"keep", "strip", "add"}},
	"secrets[].reload":        {desc: "A change of this secret triggers the app's reload.", def: true},

	"reload":                        {desc: "How the app is told about changes: at most one of signal, http, exec."},
	"reload.signal":                 {desc: "Send a signal to the app's process."},
	"reload.signal.name":            {desc: "The signal.", def: "SIGHUP", enum: reload.SignalNames()},
	"reload.signal.pid_file":        {desc: "File holding the app's pid, re-read at each reload."},
	"reload.signal.process":         {desc: "The app's executable name (needs a shared PID namespace)."},
	"reload.http":                   {desc: "Call a URL."},
	"reload.http.url":               {desc: "http:// or https:// URL, without credentials.", pattern: "^https?://", required: true},
	"reload.http.method":            {desc: "HTTP method.", def: "POST", pattern: httpMethodRE.String()},
	"reload.http.headers":           {desc: "Request headers."},
	"reload.http.status_min":        {desc: "Lowest status that counts as success.", def: 200, min: ptr(100), max: ptr(599)},
	"reload.http.status_max":        {desc: "Highest status that counts as success.", def: 299, min: ptr(100), max: ptr(599)},
	"reload.http.timeout":           {desc: "Timeout of one request.", def: "5s"},
	"reload.http.retries":           {desc: "Retries after a failed request.", def: 3, min: ptr(0), max: ptr(100)},
	"reload.exec":                   {desc: "Run a command (no shell)."},
	"reload.exec.command":           {desc: "Program and arguments.", required: true},
	"reload.exec.timeout":           {desc: "Time the command may take.", def: "30s"},
	"reload.supervise":              {desc: "Settings for the app supervised by run … -- APP ARGS."},
	"reload.supervise.signal":       {desc: "Signal sent to the child on change.", def: "SIGHUP", enum: reload.SignalNames()},
	"reload.supervise.restart":      {desc: "Restart the child on change instead of signalling it.", def: false},
	"reload.supervise.stop_signal":  {desc: "Signal that stops the child.", def: "SIGTERM", enum: reload.SignalNames()},
	"reload.supervise.stop_timeout": {desc: "Time the child has to stop before SIGKILL.", def: "10s"},
	"reload.coalesce":               {desc: "Quiet time that groups changes into one reload.", def: "1s"},
	"reload.max_wait":               {desc: "Longest a change waits for its reload; >= coalesce.", def: "10s"},
	"reload.on_initial_sync":        {desc: "auto: tell the app after the first sync only when it is already running (pid file alive or a matching process); always; never. true and false mean always and auto.", def: reload.OnInitialAuto, enum: []string{reload.OnInitialAuto, reload.OnInitialAlways, reload.OnInitialNever}},
}

// constraints across the keys of one mapping.
var constraints = map[string]map[string]any{
	"reload": {"not": map[string]any{"anyOf": []any{
		map[string]any{"required": []string{"signal", "http"}},
		map[string]any{"required": []string{"signal", "exec"}},
		map[string]any{"required": []string{"http", "exec"}},
	}}},
	"reload.signal": {"oneOf": []any{
		map[string]any{"required": []string{"pid_file"}},
		map[string]any{"required": []string{"process"}},
	}},
	"sources.vault.auth": {"allOf": authRequired()},
	"secrets[]": {"oneOf": []any{
		map[string]any{"required": []string{"ref"}},
		map[string]any{"required": []string{"template"}},
		map[string]any{"required": []string{"template_file"}},
	}},
}

// authRequired is, per auth method with required fields, "if method is M
// then these are required", from authMethods.
func authRequired() []any {
	var all []any
	for _, m := range authMethodNames {
		req := authMethods[m].required
		if len(req) == 0 {
			continue
		}
		all = append(all, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"method": map[string]any{"const": m}}, "required": []string{"method"}},
			"then": map[string]any{"required": req},
		})
	}
	return all
}

// acceptedKeys returns every key the decoder reads, by normalized path, and
// its kind.
func acceptedKeys() map[string]kind {
	d := &decoder{keys: map[string]kind{}}
	d.config(nil)
	return d.keys
}

const durationPattern = `^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))*$`

// JSONSchema returns the JSON Schema (draft 2020-12) of the config file,
// generated from the keys the decoder accepts. docs/config.schema.json is its
// output.
func JSONSchema() ([]byte, error) {
	keys := acceptedKeys()
	root := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://github.com/phase-sidecar/phase-sidecar/docs/config.schema.json",
		"title":       "phase-sidecar config",
		"description": "The phase-sidecar config file; see docs/config.md.",
	}
	if err := object(root, "", keys); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// object fills s with the schema of the mapping at path prefix.
func object(s map[string]any, prefix string, keys map[string]kind) error {
	props := map[string]any{}
	var required []string
	for p, k := range keys {
		name, ok := strings.CutPrefix(p, prefix)
		if !ok || strings.ContainsAny(name, ".[") {
			continue
		}
		f, ok := fields[p]
		if !ok {
			return fmt.Errorf("config: key %q has no entry in fields", p)
		}
		ps, err := property(p, k, f, keys)
		if err != nil {
			return err
		}
		props[name] = ps
		if f.required {
			required = append(required, name)
		}
	}
	s["type"] = "object"
	s["additionalProperties"] = false
	s["properties"] = props
	if len(required) > 0 {
		slices.Sort(required)
		s["required"] = required
	}
	return nil
}

func property(p string, k kind, f field, keys map[string]kind) (map[string]any, error) {
	s := map[string]any{"description": f.desc}
	if f.def != nil {
		s["default"] = f.def
	}
	switch k {
	case kString, kPath:
		s["type"] = "string"
		if k == kPath {
			s["pattern"] = "^/"
		}
		if f.pattern != "" {
			s["pattern"] = f.pattern
		}
		if f.enum != nil {
			s["enum"] = f.enum
		}
		if f.maxLength > 0 {
			s["maxLength"] = f.maxLength
		}
	case kBool:
		s["type"] = "boolean"
	case kInt:
		s["type"] = "integer"
		if f.min != nil {
			s["minimum"] = *f.min
		}
		if f.max != nil {
			s["maximum"] = *f.max
		}
	case kFloat:
		s["type"] = "number"
		s["minimum"] = 0
		if f.max != nil {
			s["maximum"] = *f.max
		}
	case kDuration:
		s["type"] = "string"
		s["pattern"] = durationPattern
	case kMode:
		s["type"] = "string"
		s["pattern"] = modeRE.String()
	case kSize:
		s["anyOf"] = []any{
			map[string]any{"type": "integer", "minimum": 1, "maximum": maxSize},
			map[string]any{"type": "string", "pattern": `^[0-9]+ ?(B|KB|MB|GB|KiB|MiB|GiB)?$`},
		}
	case kStringList:
		s["type"] = "array"
		s["minItems"] = 1
		s["items"] = map[string]any{"type": "string"}
	case kStringMap:
		s["type"] = "object"
		s["additionalProperties"] = map[string]any{"type": "string"}
	case kObject:
		if err := object(s, p+".", keys); err != nil {
			return nil, err
		}
		maps.Copy(s, constraints[p])
	case kObjectList:
		item := map[string]any{}
		if err := object(item, p+"[].", keys); err != nil {
			return nil, err
		}
		maps.Copy(item, constraints[p+"[]"])
		s["type"] = "array"
		s["items"] = item
	default:
		return nil, fmt.Errorf("config: key %q has unknown kind %d", p, k)
	}
	return s, nil
}
