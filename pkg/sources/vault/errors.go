package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// call runs one request with the current token. When Vault answers 403 and
// the token itself turns out to be the reason (revoked, expired), it logs in
// again and retries once, so a revoked token costs no gap in the files.
func (s *Source) call(ctx context.Context, verb, p string, do func(*api.Client) (*api.Secret, error)) (*api.Secret, error) {
	sec, _, err := s.callGen(ctx, verb, p, do)
	return sec, err
}

// callGen is call that also says under which token generation the request
// went out: leases belong to the token that created them.
func (s *Source) callGen(ctx context.Context, verb, p string, do func(*api.Client) (*api.Secret, error)) (*api.Secret, int, error) {
	for attempt := 0; ; attempt++ {
		gen, err := s.auth.ensure(ctx)
		if err != nil {
			return nil, 0, err
		}
		sec, err := do(s.client)
		if err == nil {
			return sec, gen, nil
		}
		if attempt == 0 && status(err) == 403 && s.auth.rejected(ctx, gen) {
			s.log.Info("token rejected; logging in again", "path", p)
			continue
		}
		return nil, gen, s.withRetryAfter(classify(verb, p, err))
	}
}

// status is the HTTP status of a Vault response error, or 0.
func status(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// classify turns a client error into one the engine can act on. It names
// the path and says what to check, and never quotes a request body.
func classify(verb, p string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		msg := vaultMessage(re)
		switch c := re.StatusCode; {
		case c == 403:
			return fmt.Errorf("vault: %s %q: the token's policies do not grant this path (for KV v2 the policy path is MOUNT/data/PATH, for lease renewal sys/leases/renew): %w", verb, p, sources.ErrPermission)
		case c == 404:
			return fmt.Errorf("vault: %s %q: %w", verb, p, sources.ErrNotFound)
		case c == 429:
			return fmt.Errorf("vault: %s %q: rate limited%s: %w", verb, p, msg, sources.ErrThrottled)
		case c == 412 || c >= 500:
			// 503: sealed or standby without an active node; 412: a
			// performance standby not yet caught up.
			return fmt.Errorf("vault: %s %q: status %d%s: %w", verb, p, c, msg, sources.ErrUnavailable)
		default:
			return fmt.Errorf("vault: %s %q: status %d%s", verb, p, c, msg)
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("vault: %s %q: %w", verb, p, err)
	}
	if hint := tlsHint(err); hint != "" {
		return fmt.Errorf("vault: %s %q: %s: %w", verb, p, hint, sources.ErrUnavailable)
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) {
		return fmt.Errorf("vault: %s %q: %v: %w", verb, p, err, sources.ErrUnavailable)
	}
	return fmt.Errorf("vault: %s %q: %w", verb, p, err)
}

// vaultMessage is Vault's own error text (server messages name paths and
// reasons, not values), prefixed for appending.
func vaultMessage(re *api.ResponseError) string {
	if re.RawError || len(re.Errors) == 0 {
		return ""
	}
	// Vault nests multierror text ("2 errors occurred:\n\t* a\n\t* b"):
	// flatten it to one line.
	var parts []string
	for _, e := range re.Errors {
		for _, line := range strings.Split(e, "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
			if line == "" || strings.HasSuffix(line, "errors occurred:") || strings.HasSuffix(line, "error occurred:") {
				continue
			}
			parts = append(parts, line)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, "; ")
}

// tlsHint says what to check for a TLS failure, or "".
func tlsHint(err error) string {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &he):
		return fmt.Sprintf("tls: the server certificate is not valid for %q; check address or tls_server_name", he.Host)
	case errors.As(err, &ua):
		return "tls: the server certificate is signed by an unknown authority; check ca_cert (or VAULT_CACERT)"
	case errors.As(err, &ci):
		return fmt.Sprintf("tls: the server certificate is invalid (%v); check the server's certificate and ca_cert", ci)
	case errors.As(err, &cv):
		return fmt.Sprintf("tls: certificate verification failed (%v); check ca_cert (or VAULT_CACERT) and tls_server_name", cv.Err)
	case errors.As(err, &rh):
		return "tls: the server did not answer with TLS; check the address scheme (http:// or https://)"
	case strings.Contains(err.Error(), "tls: "):
		return fmt.Sprintf("%v; check ca_cert, client_cert, client_key and tls_server_name", err)
	}
	return ""
}
