package aws

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// newRetryer is the SDK's standard retryer (3 attempts, exponential back-off
// with full jitter, throttles retried); the source-wide back-off comes on top
// when the retries are exhausted.
func newRetryer() *retry.Standard { return retry.NewStandard() }

// codeSentinel maps AWS error codes to the errors the engine decides on.
var codeSentinel = map[string]error{
	"AccessDeniedException":         sources.ErrPermission,
	"AccessDenied":                  sources.ErrPermission,
	"DecryptionFailure":             sources.ErrPermission, // KMS refused
	"KMSAccessDeniedException":      sources.ErrPermission,
	"ResourceNotFoundException":     sources.ErrNotFound,
	"ParameterNotFound":             sources.ErrNotFound,
	"ParameterVersionNotFound":      sources.ErrNotFound,
	"ParameterVersionLabelNotFound": sources.ErrNotFound,
	"ThrottlingException":           sources.ErrThrottled,
	"Throttling":                    sources.ErrThrottled,
	"TooManyRequestsException":      sources.ErrThrottled,
	"RequestLimitExceeded":          sources.ErrThrottled,
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
// values, so they are passed on.
func (s *Source) classify(what, action string, err error, fallback error) error {
	if err == nil {
		return nil
	}
	var ie *IMDSError
	if errors.As(err, &ie) {
		return fmt.Errorf("%s: %w", what, ie)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &awsError{msg: fmt.Sprintf("%s: %v", what, ctxErr(err)), err: err}
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg := ae.ErrorCode(), ae.ErrorMessage()
		sentinel := codeSentinel[code]
		if sentinel == nil {
			sentinel = fallback
		}
		text := fmt.Sprintf("%s: %s: %s", what, code, msg)
		if clockCodes[code] {
			text += "; " + clockHint
		}
		switch sentinel {
		case sources.ErrPermission:
			text = s.denied(what, action, msg)
		case sources.ErrNotFound:
			text = fmt.Sprintf("%s: not found (%s): %s", what, code, msg)
		case sources.ErrThrottled:
			text = fmt.Sprintf("%s: throttled by AWS (%s) after the SDK's retries; the whole AWS source backs off", what, code)
		}
		return &awsError{msg: text, sentinel: sentinel, err: err}
	}
	var qe *ratelimit.QuotaExceededError
	if errors.As(err, &qe) {
		return &awsError{msg: fmt.Sprintf("%s: the SDK's client-side retry quota is exhausted", what), sentinel: sources.ErrThrottled, err: err}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		// An error body the SDK could not decode (some proxies and
		// emulators answer XML or HTML): the status still says enough.
		switch code := re.HTTPStatusCode(); {
		case code == 403:
			return &awsError{msg: s.denied(what, action, "HTTP 403"), sentinel: sources.ErrPermission, err: err}
		case code == 401:
			return &awsError{msg: fmt.Sprintf("%s: HTTP 401: the credentials were not accepted", what), sentinel: sources.ErrAuth, err: err}
		case code == 429:
			return &awsError{msg: fmt.Sprintf("%s: HTTP 429: throttled by AWS; the whole AWS source backs off", what), sentinel: sources.ErrThrottled, err: err}
		case code >= 500:
			return &awsError{msg: fmt.Sprintf("%s: HTTP %d from AWS", what, code), sentinel: sources.ErrUnavailable, err: err}
		}
	}
	var se *smithyhttp.RequestSendError
	var ne net.Error
	if errors.As(err, &se) || errors.As(err, &ne) {
		return &awsError{msg: fmt.Sprintf("%s: cannot reach AWS: %v", what, err), sentinel: sources.ErrUnavailable, err: err}
	}
	if fallback == nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return &awsError{msg: fmt.Sprintf("%s: %v", what, err), sentinel: fallback, err: err}
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
		if s.chain != nil {
			who += " (" + s.chain.source + ")"
		}
	}
	if action == "" {
		return fmt.Sprintf("%s: access denied for %s: %s", what, who, msg)
	}
	return fmt.Sprintf("%s: access denied: %s needs %s (and kms:Decrypt on a customer-managed key): %s", what, who, action, msg)
}
