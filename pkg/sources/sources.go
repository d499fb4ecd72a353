// Package sources defines the contract every secret source implements: refs,
// the objects a fetch returns, and the errors the engine acts on.
package sources

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
)

// Source reads one object (a file, a Vault path, an AWS secret or parameter).
// Fetch must be safe for concurrent use.
type Source interface {
	Fetch(ctx context.Context, ref Ref) (Object, error)
}

// Batcher is implemented by sources that read many objects in one request
// (BatchGetSecretValue, GetParameters). Results are in the order of refs.
type Batcher interface {
	FetchBatch(ctx context.Context, refs []Ref) []Result
}

// Grouper is implemented by sources that can read several objects as one
// consistent snapshot: the members of a bundle that live in one kubelet
// volume are read from one resolved generation, checked unchanged after the
// reads and retried otherwise, so a bundle never pairs a certificate of one
// generation with a key of the next. Results are in the order of refs; refs
// the source cannot group are read one by one.
type Grouper interface {
	FetchGroup(ctx context.Context, refs []Ref) []Result
}

// Result is one answer of a batch.
type Result struct {
	Object Object
	Err    error
}

// Watcher is implemented by sources that can push hints. Watch blocks until
// ctx ends and calls wake(ref) when ref may have changed; a hint only wakes
// the engine, the content decides whether anything changed.
type Watcher interface {
	Watch(ctx context.Context, refs []Ref, wake func(Ref)) error
}

// Rechecker is implemented by sources that want their objects read again
// at least every Recheck, whatever a secret's refresh says (the file
// source's hash re-check, for changes a watch can miss); 0 means no bound.
type Rechecker interface {
	Recheck() time.Duration
}

// Runner is implemented by sources with background work of their own (token
// renewal, credential refresh). Run blocks until ctx ends and returns nil then.
type Runner interface {
	Run(ctx context.Context) error
}

// Object is what a fetch returns.
//
// A source sets Value for a single raw value (a file, a SecretString, a
// parameter), Fields for named values (Vault data, the files of a directory,
// the parameters under a path), or both (Value as the JSON of Fields). A ref
// without a field whose object has no Value expands: each field becomes a
// target of its own.
type Object struct {
	Value  secret.Value
	Fields map[string]secret.Value
	// Version is printable and never a value: a KV version, an AWS VersionId,
	// a hash prefix.
	Version string
	// Expiry is when the value stops being valid (lease end, NotAfter); zero
	// when unknown.
	Expiry time.Time
	// RefreshAt is when the source wants the object fetched again (a lease's
	// renewal point); zero means the engine's interval applies.
	RefreshAt time.Time
}

// Expands reports whether a ref without a field maps this object to many
// targets.
func (o Object) Expands() bool { return o.Value.IsZero() && o.Fields != nil }

// Keys returns the field names in order.
func (o Object) Keys() []string {
	keys := make([]string, 0, len(o.Fields))
	for k := range o.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Select picks field from the object: a named field, or else a top-level key
// of the JSON object in Value. An empty field selects the whole Value.
// Strings come out unquoted; other JSON values as their JSON text.
func (o Object) Select(field string) (secret.Value, error) {
	if field == "" {
		return o.Value, nil
	}
	if v, ok := o.Fields[field]; ok {
		return v, nil
	}
	if o.Value.IsZero() {
		return secret.Value{}, fmt.Errorf("field %q: %w", field, ErrFieldNotFound)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(o.Value.Reveal(), &m); err != nil {
		// The JSON error can quote the value; never pass it on.
		return secret.Value{}, fmt.Errorf("field %q: the value is not a JSON object: %w", field, ErrFieldNotFound)
	}
	raw, ok := m[field]
	if !ok {
		return secret.Value{}, fmt.Errorf("field %q: %w", field, ErrFieldNotFound)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return secret.FromString(s), nil
	}
	return secret.New(raw), nil
}

// Errors the engine decides on. Sources wrap them with %w, next to the
// underlying error where there is one.
var (
	ErrNotFound      = errors.New("not found")
	ErrFieldNotFound = errors.New("field not found")
	ErrPermission    = errors.New("permission denied")
	ErrTooLarge      = errors.New("value too large")
	ErrThrottled     = errors.New("throttled")
	ErrAuth          = errors.New("authentication failed")
	ErrUnavailable   = errors.New("source unavailable")
)

// RetryAfterError is an answer that said when to come back (an HTTP
// Retry-After, a rate-limit quota's reset). The engine's circuit breaker
// waits at least that long before its next probe.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter is the wait err asks for, or 0.
func RetryAfter(err error) time.Duration {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After
	}
	return 0
}

// SourceLevel reports whether err says something about the source as a
// whole (unreachable, timing out, failing, throttling) rather than about
// one secret (not found, denied, too large): only these count against a
// source's circuit breaker.
func SourceLevel(err error) bool {
	switch Reason(err) {
	case "unavailable", "throttled", "timeout":
		return !errors.Is(err, context.Canceled)
	}
	return false
}

// Reason classifies err into the bounded reason label of
// phase_sidecar_secret_fetch_errors_total.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrFieldNotFound):
		return "field_not_found"
	case errors.Is(err, ErrNotFound), errors.Is(err, os.ErrNotExist):
		return "not_found"
	case errors.Is(err, ErrPermission), errors.Is(err, os.ErrPermission):
		return "permission_denied"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrThrottled):
		return "throttled"
	case errors.Is(err, ErrAuth):
		return "auth"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	default:
		return "other"
	}
}

// Reasons lists every value Reason returns, for pre-initialising metrics.
var Reasons = []string{"not_found", "field_not_found", "permission_denied", "too_large", "throttled", "auth", "timeout", "unavailable", "other"}

// versionKey keys ShortHash, so a printed version cannot confirm a guessed
// value offline: the plain SHA-256 of a short password is a lookup away.
var versionKey = func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("sources: no randomness for the version key: " + err.Error())
	}
	return k
}()

// ShortHash is the printable version used for content-addressed objects:
// the first 12 hex digits of an HMAC-SHA-256, under a key random to this
// process, of the content's SHA-256. Equal content gives equal versions
// within one process; nothing about the content can be learned from it.
func ShortHash(sum [32]byte) string {
	m := hmac.New(sha256.New, versionKey)
	m.Write(sum[:])
	return hex.EncodeToString(m.Sum(nil)[:6])
}

// Version formats a numeric version.
func Version(n int64) string { return strconv.FormatInt(n, 10) }
