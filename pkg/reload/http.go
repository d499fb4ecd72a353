package reload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/backoff"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
)

// HTTP calls a URL. The request body is JSON {"secrets": [names]} (none
// for GET and HEAD). Credentials in the URL's user info or query are sent
// but never shown: every message and the status use Target, where they are
// replaced. Redirects are not followed, so credentials and headers go only
// to the configured host.
type HTTP struct {
	client   *http.Client
	method   string
	url      string
	redacted string
	headers  http.Header
	min, max int
	timeout  time.Duration
	retries  int
	// retry spaces the attempts of one Notify.
	retry backoff.Policy
}

var (
	_ Notifier = (*HTTP)(nil)
	_ prober   = (*HTTP)(nil)
)

// NewHTTP builds the notifier. cfg is taken as given (pkg/config checks
// the URL, the method and the status range, and applies the defaults).
func NewHTTP(cfg HTTPConfig) *HTTP {
	h := &HTTP{
		method:   cfg.Method,
		url:      cfg.URL,
		redacted: secret.RedactURL(cfg.URL),
		headers:  make(http.Header, len(cfg.Headers)),
		min:      cfg.StatusMin,
		max:      cfg.StatusMax,
		timeout:  cfg.Timeout,
		retries:  cfg.Retries,
		retry:    httpRetry,
		client: &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	if h.method == "" {
		h.method = http.MethodGet // what net/http sends for "", named for messages and the body
	}
	for k, v := range cfg.Headers {
		h.headers.Set(k, string(v.Reveal()))
	}
	return h
}

// Target is the URL with credentials redacted.
func (h *HTTP) Target() string { return h.redacted }

// probeTimeout bounds the connect that tells whether the app listens.
const probeTimeout = time.Second

// Running reports whether something accepts connections at the URL's
// host and port: the app is up to take a reload request.
func (h *HTTP) Running() bool {
	u, err := url.Parse(h.url)
	if err != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(u.Hostname(), port), probeTimeout)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// httpRetry spaces the attempts of one notification.
var httpRetry = backoff.Policy{Base: 200 * time.Millisecond, Max: 5 * time.Second, Jitter: backoff.Equal}

// latency is the longest one notification takes: every attempt timing out,
// with the longest waits between them.
func (c HTTPConfig) latency() time.Duration {
	d := time.Duration(c.Retries+1) * c.Timeout
	for a := 1; a <= c.Retries; a++ {
		d += httpRetry.Ceiling(a)
	}
	return d
}

// Notify sends the request, retrying up to the configured number of times
// on a transport error or an unexpected status.
func (h *HTTP) Notify(ctx context.Context, b Batch) error {
	body, err := json.Marshal(struct {
		Secrets []string `json:"secrets"`
	}{b.Secrets})
	if err != nil {
		return fmt.Errorf("http: encode body: %w", err)
	}
	for attempt := 0; ; attempt++ {
		err = h.once(ctx, body)
		if err == nil || attempt >= h.retries || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(h.retry.Delay(attempt + 1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
	if err != nil && h.retries > 0 {
		return fmt.Errorf("%w (after %d attempts)", err, h.retries+1)
	}
	return err
}

func (h *HTTP) once(ctx context.Context, body []byte) error {
	if h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	var rd io.Reader
	if h.method != http.MethodGet && h.method != http.MethodHead {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, h.method, h.url, rd)
	if err != nil {
		return fmt.Errorf("http: %s %s: build request", h.method, h.redacted)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "phase-sidecar")
	for k, v := range h.headers {
		req.Header[k] = v
	}
	if host := h.headers.Get("Host"); host != "" {
		req.Host = host // net/http ignores a Host header field
	}
	resp, err := h.client.Do(req)
	if err != nil {
		// *url.Error names the URL; report the cause under the redacted one.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		var nerr net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
			return fmt.Errorf("http: %s %s: no response within %s: %w", h.method, h.redacted, h.timeout, context.DeadlineExceeded)
		}
		return fmt.Errorf("http: %s %s: %w", h.method, h.redacted, err)
	}
	// Drain a little so the connection can be reused; the body is not shown.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < h.min || resp.StatusCode > h.max {
		return fmt.Errorf("http: %s %s: status %d, want %d-%d", h.method, h.redacted, resp.StatusCode, h.min, h.max)
	}
	return nil
}
