package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeStatus struct {
	missing  []string
	scrapes  atomic.Int32
	snapshot any
}

func (f *fakeStatus) Missing() []string { return f.missing }
func (f *fakeStatus) Snapshot() any     { return f.snapshot }
func (f *fakeStatus) BeforeScrape()     { f.scrapes.Add(1) }

func TestEndpoints(t *testing.T) {
	st := &fakeStatus{missing: []string{"A", "B"}, snapshot: map[string]any{"ready": false}}
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "phase_sidecar_test", Help: "test"})
	reg.MustRegister(g)
	srv, err := New(Options{Addr: "127.0.0.1:0", Gatherer: reg, Status: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 503, "2 required secret(s) not written yet or expired: A, B"},
		{"/v1/status", 200, `"ready": false`},
		{"/metrics", 200, "phase_sidecar_test 0"},
		{"/nope", 404, ""},
	} {
		code, body := get(tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.code, tc.want)
		}
	}
	if st.scrapes.Load() != 1 {
		t.Errorf("BeforeScrape ran %d times for one scrape", st.scrapes.Load())
	}
	st.missing = nil
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz when ready = %d %q", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
}

func TestListenClash(t *testing.T) {
	a, err := New(Options{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Status: &fakeStatus{}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.ln.Close()
	_, err = New(Options{Addr: a.Addr(), Gatherer: prometheus.NewRegistry(), Status: &fakeStatus{}})
	if err == nil || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("second listener on %s: %v, want an error naming the fix", a.Addr(), err)
	}
}

func TestServerLimits(t *testing.T) {
	s, err := New(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	if s.srv.IdleTimeout <= 0 || s.srv.MaxHeaderBytes <= 0 || s.srv.MaxHeaderBytes > 64<<10 || s.srv.ReadHeaderTimeout <= 0 {
		t.Errorf("server limits: idle %v, header bytes %d, read header %v", s.srv.IdleTimeout, s.srv.MaxHeaderBytes, s.srv.ReadHeaderTimeout)
	}
}
