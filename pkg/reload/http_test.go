package reload

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/backoff"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
)

// webhook is a local net/http server whose handler the test scripts per
// request.
type webhook struct {
	srv      *httptest.Server
	calls    atomic.Int32
	requests chan *http.Request
	bodies   chan string
}

func newWebhook(t *testing.T, handle func(call int, w http.ResponseWriter, r *http.Request)) *webhook {
	t.Helper()
	h := &webhook{requests: make(chan *http.Request, 100), bodies: make(chan string, 100)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.requests <- r
		h.bodies <- string(body)
		handle(int(h.calls.Add(1)), w, r)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// withCreds puts user info and a query token into the server's URL.
func (h *webhook) withCreds(path string) string {
	return strings.Replace(h.srv.URL, "http://", "http://reloader:hunter2@", 1) + path + "?token=t0ps3cret"
}

// httpConfig is an HTTPConfig with pkg/config's defaults, which NewHTTP
// does not apply again.
func httpConfig(url string) HTTPConfig {
	return HTTPConfig{URL: url, Method: http.MethodPost, StatusMin: 200, StatusMax: 299, Timeout: 5 * time.Second}
}

func TestHTTPNotify(t *testing.T) {
	tests := []struct {
		name      string
		cfg       func(*HTTPConfig)
		handle    func(call int, w http.ResponseWriter, r *http.Request)
		wantCalls int
		wantErr   string
	}{
		{
			name: "success",
			cfg: func(c *HTTPConfig) {
				c.Headers = map[string]secret.Value{"X-Reload": secret.FromString("yes"), "Host": secret.FromString("backend.internal")}
			},
			handle:    func(int, http.ResponseWriter, *http.Request) {},
			wantCalls: 1,
		},
		{
			name: "500 then success",
			cfg:  func(c *HTTPConfig) { c.Retries = 3 },
			handle: func(call int, w http.ResponseWriter, _ *http.Request) {
				if call == 1 {
					w.WriteHeader(http.StatusInternalServerError)
				}
			},
			wantCalls: 2,
		},
		{
			name: "500 until retries run out",
			cfg:  func(c *HTTPConfig) { c.Retries = 2 },
			handle: func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
			},
			wantCalls: 3,
			wantErr:   "status 500, want 200-299 (after 3 attempts)",
		},
		{
			name: "custom status range",
			cfg:  func(c *HTTPConfig) { c.Method, c.StatusMin, c.StatusMax = http.MethodPut, 202, 202 },
			handle: func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusOK)
			},
			wantCalls: 1,
			wantErr:   "status 200, want 202-202",
		},
		{
			name: "redirects are not followed",
			cfg:  func(*HTTPConfig) {},
			handle: func(_ int, w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			},
			wantCalls: 1,
			wantErr:   "status 302",
		},
		{
			name: "timeout",
			cfg:  func(c *HTTPConfig) { c.Timeout = 50 * time.Millisecond },
			handle: func(_ int, _ http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			wantCalls: 1,
			wantErr:   "no response within 50ms",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook := newWebhook(t, tt.handle)
			cfg := httpConfig(hook.withCreds("/reload"))
			tt.cfg(&cfg)
			h := NewHTTP(cfg)
			h.retry = backoff.Policy{Base: time.Millisecond, Max: time.Millisecond}
			err := h.Notify(context.Background(), Batch{Secrets: []string{"DATABASE_PASSWORD", "SECRET_KEY"}})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Notify = %v, want %q", err, tt.wantErr)
				}
				for _, leak := range []string{"hunter2", "t0ps3cret", "reloader"} {
					if strings.Contains(err.Error(), leak) {
						t.Fatalf("error %q leaks %q", err, leak)
					}
				}
			}
			if got := int(hook.calls.Load()); got != tt.wantCalls {
				t.Fatalf("%d calls, want %d", got, tt.wantCalls)
			}
			req := <-hook.requests
			if user, pass, ok := req.BasicAuth(); !ok || user != "reloader" || pass != "hunter2" {
				t.Errorf("basic auth %q %q %v: the URL's credentials were not sent", user, pass, ok)
			}
			if got := req.URL.Query().Get("token"); got != "t0ps3cret" {
				t.Errorf("query token %q", got)
			}
			if req.Method != cfg.Method {
				t.Errorf("method %s, want %s", req.Method, cfg.Method)
			}
			for k, v := range cfg.Headers {
				got := req.Header.Get(k)
				if k == "Host" {
					got = req.Host
				}
				if got != string(v.Reveal()) {
					t.Errorf("header %s = %q, want %q", k, got, v.Reveal())
				}
			}
		})
	}
}

// TestHTTPReloaderRedacts drives an HTTP webhook through the Reloader: a
// failing call is retried, and the URL's credentials appear in no log
// line, status or error.
func TestHTTPReloaderRedacts(t *testing.T) {
	hook := newWebhook(t, func(call int, w http.ResponseWriter, _ *http.Request) {
		if call <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	logger, logs := newLogger()
	hc := httpConfig(hook.withCreds("/reload"))
	r := newReloader(t, Config{
		HTTP:     &hc,
		Coalesce: time.Millisecond,
	}, Options{Logger: logger, RetryMin: time.Millisecond, RetryMax: time.Millisecond})
	results := watch(r)
	runReloader(t, r)
	r.Changed([]string{"SECRET_KEY", "REDIS_PASSWORD"}, false)

	var statuses []Status
	for {
		st := nextStatus(t, results)
		statuses = append(statuses, st)
		if st.Result == "success" {
			break
		}
	}
	if len(statuses) != 3 {
		t.Fatalf("%d attempts, want 3", len(statuses))
	}
	var body struct{ Secrets []string }
	if err := json.Unmarshal([]byte(<-hook.bodies), &body); err != nil || strings.Join(body.Secrets, ",") != "REDIS_PASSWORD,SECRET_KEY" {
		t.Fatalf("body %+v, %v", body, err)
	}
	if statuses[0].Error == "" || !strings.Contains(statuses[0].Error, "status 503") {
		t.Fatalf("first status %+v", statuses[0])
	}
	var everything strings.Builder
	everything.WriteString(logs.String())
	for _, st := range append(statuses, r.Status()) {
		b, _ := json.Marshal(st)
		everything.Write(b)
	}
	if !strings.Contains(everything.String(), "//127.0.0.1:") || !strings.Contains(everything.String(), "token=REDACTED") {
		t.Errorf("the redacted target is nowhere:\n%s", everything.String())
	}
	for _, leak := range []string{"hunter2", "t0ps3cret", "reloader:"} {
		if strings.Contains(everything.String(), leak) {
			t.Errorf("%q leaks:\n%s", leak, everything.String())
		}
	}
}

// The zero HTTPConfig (but a URL) is safe: a GET without a body, with no
// bound beyond ctx, and a status range that accepts nothing, so the
// failure shows.
func TestHTTPZeroConfig(t *testing.T) {
	hook := newWebhook(t, func(int, http.ResponseWriter, *http.Request) {})
	err := NewHTTP(HTTPConfig{URL: hook.srv.URL + "/reload"}).Notify(context.Background(), Batch{Secrets: []string{"A"}})
	if err == nil || !strings.Contains(err.Error(), "http: GET http://127.0.0.1:") || !strings.Contains(err.Error(), "status 200, want 0-0") {
		t.Fatalf("Notify = %v", err)
	}
	if req := <-hook.requests; req.Method != http.MethodGet || req.ContentLength > 0 {
		t.Errorf("request %s with %d bytes of body", req.Method, req.ContentLength)
	}
}

func TestHTTPUnreachable(t *testing.T) {
	hook := newWebhook(t, func(int, http.ResponseWriter, *http.Request) {})
	url := hook.withCreds("/")
	hook.srv.Close()
	h := NewHTTP(httpConfig(url))
	err := h.Notify(context.Background(), Batch{})
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Notify = %v, want connection refused", err)
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "t0ps3cret") {
		t.Fatalf("error leaks credentials: %v", err)
	}
}

// TestHTTPRunning: an endpoint that accepts connections is a running app,
// whatever it would answer; a closed port is not. The probe sends nothing.
func TestHTTPRunning(t *testing.T) {
	hook := newWebhook(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	h := NewHTTP(httpConfig(hook.withCreds("/reload")))
	if !h.Running() {
		t.Fatal("Running() = false for a listening endpoint")
	}
	if n := hook.calls.Load(); n != 0 {
		t.Fatalf("the probe made %d requests", n)
	}
	hook.srv.Close()
	if h.Running() {
		t.Fatal("Running() = true for a closed port")
	}
}
