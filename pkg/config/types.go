package config

import (
	"io/fs"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/render"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// Config is the validated configuration, with every default applied. The
// rest of the program sees only these plain structs.
type Config struct {
	Path string // the file it was loaded from
	// Warnings are problems that do not stop the sidecar (validate prints
	// them), with positions.
	Warnings Errors
	Output   Output
	Listen   string        // default ":9102"
	Refresh  time.Duration // default 1m: the interval for static values
	// MaxStale is how long after the last successful sync a secret counts as
	// stale; 0 means 3× its refresh interval.
	MaxStale    time.Duration
	MaxFileSize int64 // bytes; default 1 MiB
	Concurrency int   // fetches in flight; default 8
	// Readiness decides whether an expired value still counts as written
	// for /readyz: "strict" (default: a required secret whose only value has
	// expired makes the sidecar not ready) or "serve_expired".
	Readiness string
	// Splay spreads each object's first refresh after the first sync over
	// this fraction of its interval (0–1, default 1), so a fleet started
	// together does not stay in step.
	Splay float64
	// Breaker is the source-wide circuit breaker of each remote source.
	Breaker Breaker
	Sources Sources
	Secrets []Secret
	Reload  Reload
}

// Breaker configures the circuit breaker that every remote source (Vault,
// Secrets Manager, SSM) has of its own.
type Breaker struct {
	Threshold int           // consecutive source-level failures that open it; default 3
	Cap       time.Duration // longest wait between probes; default 5m, at least 1s
}

// Readiness policies.
const (
	ReadinessStrict       = "strict"
	ReadinessServeExpired = "serve_expired"
)

// Expiry policies of secrets[].on_expiry.
const (
	OnExpiryKeep   = "keep"
	OnExpiryRemove = "remove"
)

// Output is where targets are written.
type Output struct {
	Dir       string
	AllowDisk bool
	Mode      fs.FileMode // default 0440
	UID       int         // -1: leave as the sidecar's
	GID       int         // -1: leave as the sidecar's
}

// Secret is one entry of secrets[].
type Secret struct {
	Name     string // the app's variable (without _FILE)
	Ref      sources.Ref
	File     string // target file name in Output.Dir (or inside Bundle); default lower-cased Name
	Bundle   string // bundle directory name; members are published together
	Required bool   // default true
	Refresh  time.Duration
	MaxStale time.Duration
	Mode     fs.FileMode
	UID, GID int
	// Newline: "keep" (default, byte for byte), "strip" (remove trailing
	// \r and \n), "add" (ensure exactly one trailing \n).
	Newline string
	Reload  bool // default true: a change triggers the app's reload
	// Template is a Go text/template rendered from other secrets instead
	// of a ref's value; TemplateFile is where it was read from (then Ref
	// is that file, so the file source re-reads it on change).
	Template     string
	TemplateFile string
	// Parsed is the inline template as validated, so it is parsed once.
	Parsed *render.Template
	// Inputs are the secrets the template reads ({{ secret "NAME" }}), by
	// name, each once, in order.
	Inputs []string
	// InputOnly (write: false) makes a secret fetched and usable in
	// templates, with no file, no NAME_FILE line, not counted for
	// readiness.
	InputOnly bool
	// Format renders a whole object (a ref without #field): json, dotenv
	// or yaml; empty: as the source gives it.
	Format string
	// RenewMargin is the room kept before a value's expiry, on top of the
	// reload's own time, when the engine schedules its replacement.
	RenewMargin Margin
	// OnExpiry: "keep" (default) leaves an expired value in place; "remove"
	// removes the target once the value expired and was not replaced.
	OnExpiry string
	Pos      Pos // where the entry starts in the file
	RefPos   Pos // where the ref is; zero when the ref is missing or bad
}

// Margin is a duration, or a fraction of a value's lifetime when Fixed is
// zero ("10%" is Fraction 0.1, the default).
type Margin struct {
	Fixed    time.Duration
	Fraction float64
}

// Of is the margin for a value that lives lifetime.
func (m Margin) Of(lifetime time.Duration) time.Duration {
	if m.Fixed > 0 {
		return m.Fixed
	}
	return time.Duration(m.Fraction * float64(lifetime))
}

// Pos is a position in the config file.
type Pos struct {
	Line, Column int
}

// Sources holds per-kind source settings; a nil pointer means not
// configured.
type Sources struct {
	File  File
	Vault *Vault
	AWS   *AWS
}

// File configures the mounted-file source.
type File struct {
	Recheck time.Duration // periodic hash re-check; default 1m
}

// Vault configures the Vault source. Empty fields fall back to VAULT_ADDR,
// VAULT_CACERT and VAULT_NAMESPACE in the source.
type Vault struct {
	Address       string
	CACert        string
	ClientCert    string
	ClientKey     string
	TLSServerName string
	Namespace     string
	Timeout       time.Duration // default 30s
	KVVersion     int           // 0: detect per mount; 1 or 2 to force
	RateLimit     float64       // requests per second across the source, logins included; 0 = unlimited
	RateBurst     int           // requests allowed at once above the rate; default max(1, RateLimit)
	Auth          VaultAuth
}

// VaultAuth is the login method and its fields.
type VaultAuth struct {
	Method          string // token, approle, kubernetes, jwt, aws
	Mount           string // default: the method's name
	TokenFile       string // token
	RoleIDFile      string // approle
	SecretIDFile    string // approle
	WrappedSecretID bool   // approle: secret_id_file holds a response-wrapping token
	Role            string // kubernetes, jwt, aws
	JWTFile         string // kubernetes (default the service-account token), jwt
	ServerIDHeader  string // aws: X-Vault-AWS-IAM-Server-ID
	STSRegion       string // aws: the region the STS request is signed for; required with STSEndpoint
	STSEndpoint     string // aws: where it is addressed; default the region's regional endpoint, else the global one
}

// AWS configures Secrets Manager and SSM.
type AWS struct {
	Region      string // empty: AWS_REGION, then IMDS placement
	Credentials string // "imds" (default) or "default"
	AssumeRole  *AssumeRole
	RateLimit   float64 // requests per second across the AWS source; 0 = unlimited
}

// AssumeRole is STS AssumeRole on top of the base credentials.
type AssumeRole struct {
	RoleARN        string
	ExternalID     string
	SessionName    string        // default "phase-sidecar"
	Duration       time.Duration // default 1h
	SourceIdentity string
}

// Reload configures how the app is told about changes. At most one of
// Signal, HTTP, Exec is set. Supervise holds the settings used when the
// command line names an app to supervise (run … -- APP ARGS).
type Reload struct {
	Signal    *Signal
	HTTP      *HTTP
	Exec      *Exec
	Supervise Supervise
	Coalesce  time.Duration // default 1s
	MaxWait   time.Duration // cap on the total coalescing wait; default 10s
	// OnInitialSync: reload.OnInitialAuto (default: the first sync
	// notifies only an app that is already running), OnInitialAlways or
	// OnInitialNever.
	OnInitialSync string
}

// Signal sends a signal to a process found by pid file or by name.
type Signal struct {
	Name    string // SIGHUP (default), SIGTERM, SIGINT, SIGUSR1, SIGUSR2
	PIDFile string
	Process string // executable name, or a pattern matched against the cmdline
}

// HTTP calls a URL.
type HTTP struct {
	URL     string
	Method  string                  // default POST
	Headers map[string]secret.Value // may hold credentials: never printed
	// Expected status range, inclusive; default 200–299.
	StatusMin, StatusMax int
	Timeout              time.Duration // default 5s
	Retries              int           // default 3
}

// Supervise configures the supervised child of `run -- APP ARGS`.
type Supervise struct {
	Signal      string        // sent on change; default SIGHUP
	Restart     bool          // restart the child on change instead of signalling it
	StopSignal  string        // sent to stop it; default SIGTERM
	StopTimeout time.Duration // then SIGKILL; default 10s
}

// Exec runs a command (no shell).
type Exec struct {
	Command []string
	Timeout time.Duration // default 30s
}
