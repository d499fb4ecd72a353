package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/phase-sidecar/phase-sidecar/pkg/breaker"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// codeSentinel maps AWS error codes to the errors the engine decides on;
// the SDK's throttling codes (retry.DefaultThrottleErrorCodes) are
// ErrThrottled, its transient ones (retry.DefaultRetryableErrorCodes) and
// an unlisted code answered with 5xx ErrUnavailable.
var codeSentinel = map[string]error{
	"AccessDeniedException":         sources.ErrPermission,
	"AccessDenied":                  sources.ErrPermission,
	"DecryptionFailure":             sources.ErrPermission, // KMS refused
	"KMSAccessDeniedException":      sources.ErrPermission,
	"ResourceNotFoundException":     sources.ErrNotFound,
	"ParameterNotFound":             sources.ErrNotFound,
	"ParameterVersionNotFound":      sources.ErrNotFound,
	"ParameterVersionLabelNotFound": sources.ErrNotFound,
	"UnrecognizedClientException":   sources.ErrAuth,
	"InvalidClientTokenId":          sources.ErrAuth,
	"ExpiredTokenException":         sources.ErrAuth,
	"ExpiredToken":                  sources.ErrAuth,
	"InvalidSignatureException":     sources.ErrAuth,
	"SignatureDoesNotMatch":         sources.ErrAuth,
	"IncompleteSignature":           sources.ErrAuth,
	"MissingAuthenticationToken":    sources.ErrAuth,
	"RequestTimeTooSkewed":          sources.ErrAuth,
	"RequestExpired":                sources.ErrAuth,
	"InternalServiceError":          sources.ErrUnavailable,
	"InternalServiceErrorException": sources.ErrUnavailable,
	"InternalFailure":               sources.ErrUnavailable,
	"InternalServerError":           sources.ErrUnavailable,
	"ServiceUnavailable":            sources.ErrUnavailable,
}

// clockCodes are the answers to a signature whose time AWS does not accept
// (or cannot tell apart from a wrong key). The SDK's clients correct a
// skewed clock from the response's Date header; this client does not, so
// the operator is told to fix the clock.
var clockCodes = map[string]bool{
	"InvalidSignatureException": true,
	"SignatureDoesNotMatch":     true,
	"RequestTimeTooSkewed":      true,
	"RequestExpired":            true,
}

const clockHint = "AWS refuses signatures more than 5 minutes off its clock: check the host clock (NTP, e.g. `timedatectl` or `chronyc tracking`), then the secret access key"

// awsError is a classified AWS failure: a short message naming what was
// being done, the sentinel, and the SDK error for errors.As.
type awsError struct {
	msg      string
	sentinel error
	err      error
}

func (e *awsError) Error() string { return e.msg }

func (e *awsError) Unwrap() []error {
	if e.sentinel == nil {
		return []error{e.err}
	}
	return []error{e.sentinel, e.err}
}

// classify words err from an AWS call. what names the call and its
// identifier ("aws-sm: get secret \"prod/db\""); action is the IAM action
// for access-denied hints. fallback is the sentinel for unclassified errors
// (nil: none). AWS error messages name resources and principals, never
// values, so they are passed on. A throttling or unavailable answer that
// says when to come back (Retry-After) becomes a sources.RetryAfterError,
// which the engine's circuit breaker waits out.
func (s *Source) classify(what, action string, err error, fallback error) error {
	if err == nil {
		return nil
	}
	var ie *IMDSError
	if errors.As(err, &ie) {
		return fmt.Errorf("%s: %w", what, ie)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// Reason "timeout" (source-level) or a shutdown (not counted).
		return &awsError{msg: fmt.Sprintf("%s: %v", what, ctxErr(err)), err: err}
	}
	e := s.classified(what, action, err, fallback)
	if ae, ok := e.(*awsError); ok && (ae.sentinel == sources.ErrThrottled || ae.sentinel == sources.ErrUnavailable) {
		if d, ok := retryAfter(err); ok {
			ae.msg += fmt.Sprintf(" (Retry-After %s)", d)
			return &sources.RetryAfterError{Err: ae, After: d}
		}
	}
	return e
}

func (s *Source) classified(what, action string, err error, fallback error) error {
	var re *awshttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	// The HTTP status speaks when the code does not (an error body without
	// a known code, a proxy's page).
	byStatus := map[int]error{http.StatusUnauthorized: sources.ErrAuth, http.StatusForbidden: sources.ErrPermission, http.StatusTooManyRequests: sources.ErrThrottled}[status]
	if status >= 500 {
		byStatus = sources.ErrUnavailable
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg := ae.ErrorCode(), ae.ErrorMessage()
		sentinel := codeSentinel[code]
		if _, throttle := retry.DefaultThrottleErrorCodes[code]; throttle {
			sentinel = sources.ErrThrottled
		}
		if _, transient := retry.DefaultRetryableErrorCodes[code]; transient {
			sentinel = sources.ErrUnavailable // RequestTimeout(Exception)
		}
		if sentinel == nil {
			sentinel = byStatus
		}
		if sentinel == nil {
			sentinel = fallback
		}
		text := fmt.Sprintf("%s: %s: %s", what, code, msg)
		if status >= 500 {
			text = fmt.Sprintf("%s: HTTP %d from AWS: %s: %s", what, status, code, msg)
		}
		if clockCodes[code] {
			text += "; " + clockHint
		}
		switch sentinel {
		case sources.ErrPermission:
			text = s.denied(what, action, fmt.Sprintf("%s: %s", code, msg))
		case sources.ErrNotFound:
			text = fmt.Sprintf("%s: not found (%s): %s", what, code, msg)
		case sources.ErrThrottled:
			text = fmt.Sprintf("%s: throttled by AWS (%s)", what, code)
		}
		return &awsError{msg: text, sentinel: sentinel, err: err}
	}
	var qe *ratelimit.QuotaExceededError
	if errors.As(err, &qe) {
		return &awsError{msg: fmt.Sprintf("%s: the SDK's client-side retry quota is exhausted", what), sentinel: sources.ErrThrottled, err: err}
	}
	if byStatus != nil {
		text := fmt.Sprintf("%s: HTTP %d from AWS", what, status)
		switch byStatus {
		case sources.ErrPermission:
			text = s.denied(what, action, "HTTP 403")
		case sources.ErrAuth:
			text = fmt.Sprintf("%s: HTTP 401: the credentials were not accepted", what)
		case sources.ErrThrottled:
			text = fmt.Sprintf("%s: HTTP 429: throttled by AWS", what)
		}
		return &awsError{msg: text, sentinel: byStatus, err: err}
	}
	// Not any net.Error: a syscall.Errno is one, and a missing token file
	// (ENOENT) is no unreachable AWS.
	var se *smithyhttp.RequestSendError
	var oe *net.OpError
	var ue *url.Error
	if errors.As(err, &se) || errors.As(err, &oe) || errors.As(err, &ue) {
		return &awsError{msg: fmt.Sprintf("%s: cannot reach AWS: %v", what, err), sentinel: sources.ErrUnavailable, err: err}
	}
	if fallback == nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return &awsError{msg: fmt.Sprintf("%s: %v", what, err), sentinel: fallback, err: err}
}

// retryAfter is the Retry-After of the HTTP answer in err's chain.
func retryAfter(err error) (time.Duration, bool) {
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil {
		return 0, false
	}
	return breaker.RetryAfter(re.Response.Header.Get("Retry-After"), time.Now())
}

func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

// denied words an access-denied answer: who needs which action.
func (s *Source) denied(what, action, msg string) string {
	who := "the instance role"
	if ar := s.cfg.AssumeRole; ar != nil {
		who = ar.RoleARN
	} else if s.cfg.Credentials == CredentialsDefault {
		who = "the default chain's credentials"
		s.mu.Lock()
		if s.from != "" {
			who += " (" + s.from + ")"
		}
		s.mu.Unlock()
	}
	if action == "" {
		return fmt.Sprintf("%s: access denied for %s: %s", what, who, msg)
	}
	return fmt.Sprintf("%s: access denied: %s needs %s (and kms:Decrypt on a customer-managed key): %s", what, who, action, msg)
}
