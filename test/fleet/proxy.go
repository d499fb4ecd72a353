package fleet

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// Fault is how the proxy answers instead of forwarding.
type Fault int32

const (
	None        Fault = iota // forward every request
	Unavailable              // HTTP 503, as a sealed Vault or an AWS outage answers
	RateLimited              // HTTP 429 with Retry-After, as a Vault rate-limit quota answers
	Throttled                // HTTP 400 ThrottlingException, as AWS throttles
	Drop                     // close the connection with a reset, no answer
	// Quota forwards up to the rate SetQuota set and throttles the rest
	// (AWS: 400 ThrottlingException; Vault: 429 without Retry-After), as a
	// fleet past its account's or server's quota sees: answers and throttles
	// interleave.
	Quota
)

var faultNames = map[Fault]string{None: "none", Unavailable: "503", RateLimited: "429", Throttled: "throttle", Drop: "drop", Quota: "quota"}

func (f Fault) String() string {
	if s, ok := faultNames[f]; ok {
		return s
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// ParseFault is the inverse of Fault.String.
func ParseFault(s string) (Fault, error) {
	for f, name := range faultNames {
		if name == s {
			return f, nil
		}
	}
	return None, fmt.Errorf("fleet: unknown fault %q (want 503, 429, throttle, drop, quota or none)", s)
}

// Classifier names the class a request is counted in.
type Classifier func(*http.Request) string

// Proxy is a reverse proxy on 127.0.0.1 in front of one backend (one or
// more servers holding the same values, taken in turn): it counts
// every request that arrives, per second and per class, and forwards it or
// answers with the current fault.
type Proxy struct {
	URL string // http://127.0.0.1:PORT

	retryAfter time.Duration
	counts     *Counts
	rp         *httputil.ReverseProxy
	fault      atomic.Int32
	quota      atomic.Pointer[rate.Limiter]
	passed     atomic.Int64 // requests forwarded under Quota
}

// NewProxy starts a proxy to targets (in turn) that counts into c and
// answers RateLimited with retryAfter; t's cleanup stops it.
func NewProxy(t testing.TB, targets []string, c *Counts, retryAfter time.Duration) *Proxy {
	t.Helper()
	var us []*url.URL
	for _, target := range targets {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, u)
	}
	if len(us) == 0 {
		t.Fatal("fleet: a proxy needs a target")
	}
	var next atomic.Uint64
	p := &Proxy{counts: c, retryAfter: retryAfter}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(us[(next.Add(1)-1)%uint64(len(us))])
			// AWS signs the Host header; forward it as the client sent it.
			r.Out.Host = r.In.Host
		},
		// A fleet keeps hundreds of connections to the backend alive.
		Transport: &http.Transport{
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.URL = "http://" + l.Addr().String()
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// SetFault changes how requests are answered from now on.
func (p *Proxy) SetFault(f Fault) { p.fault.Store(int32(f)) }

// SetQuota sets the rate (requests per second, a burst of one second's
// worth) that Quota forwards.
func (p *Proxy) SetQuota(perSecond float64) {
	p.quota.Store(rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond+0.5))))
}

// Passed is how many requests Quota forwarded.
func (p *Proxy) Passed() int64 { return p.passed.Load() }

// Fault is the current fault.
func (p *Proxy) Fault() Fault { return Fault(p.fault.Load()) }

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.counts.Add(time.Now(), r)
	f := p.Fault()
	// AWS's JSON protocol names the operation in X-Amz-Target; its errors
	// are JSON with __type. Vault answers {"errors": [...]}.
	aws := r.Header.Get("X-Amz-Target") != ""
	switch f {
	case None:
		p.rp.ServeHTTP(w, r)
	case Unavailable:
		if aws {
			awsError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "Service is unavailable")
		} else {
			vaultError(w, http.StatusServiceUnavailable, "Vault is sealed")
		}
	case RateLimited:
		w.Header().Set("Retry-After", strconv.Itoa(secs(p.retryAfter)))
		if aws {
			awsError(w, http.StatusTooManyRequests, "TooManyRequestsException", "Rate exceeded")
		} else {
			vaultError(w, http.StatusTooManyRequests, fmt.Sprintf("request path %q: rate limit quota exceeded", strings.TrimPrefix(r.URL.Path, "/v1/")))
		}
	case Throttled:
		awsError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
	case Drop:
		drop(w)
	case Quota:
		if l := p.quota.Load(); l != nil && l.Allow() {
			p.passed.Add(1)
			p.rp.ServeHTTP(w, r)
		} else if aws {
			awsError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		} else {
			vaultError(w, http.StatusTooManyRequests, fmt.Sprintf("request path %q: rate limit quota exceeded", strings.TrimPrefix(r.URL.Path, "/v1/")))
		}
	}
}

func vaultError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"errors\":[%q]}\n", msg)
}

func awsError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Errortype", typ)
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"__type\":%q,\"message\":%q}", typ, msg)
}

// drop resets the client's connection: SO_LINGER 0, then close.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
