// Package server serves /metrics, /healthz, /readyz and /v1/status on a mux
// of its own.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is what the server needs from the engine and the reloader.
type Status interface {
	// Missing lists the required secrets not written yet; empty means ready.
	Missing() []string
	// Snapshot is the /v1/status document. It must hold no secret value.
	Snapshot() any
	// BeforeScrape refreshes gauges computed on demand (staleness).
	BeforeScrape()
}

// Options configures a Server.
type Options struct {
	Addr     string
	Gatherer prometheus.Gatherer
	Status   Status
	Logger   *slog.Logger
}

// Server is the sidecar's HTTP endpoint.
type Server struct {
	o   Options
	srv *http.Server
	ln  net.Listener
}

// New binds the listen address, so a port clash fails at start-up, not later.
func New(o Options) (*Server, error) {
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %q: %w (set listen: or --listen to a free address)", o.Addr, err)
	}
	s := &Server{o: o, ln: ln}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		// Scrapers and probes keep connections alive; an idle one is
		// closed after a while rather than held for ever.
		IdleTimeout: 2 * time.Minute,
		// Nothing served here needs large headers: 16 KiB, not 1 MiB.
		MaxHeaderBytes: 16 << 10,
	}
	return s, nil
}

// Addr is the address actually bound (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler returns the mux with every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(s.o.Gatherer, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		s.o.Status.BeforeScrape()
		metrics.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if missing := s.o.Status.Missing(); len(missing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %d required secret(s) not written yet or expired: %s\n", len(missing), strings.Join(missing, ", "))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.o.Status.Snapshot())
	})
	return mux
}

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("http server shutdown: %w", err)
	}
	return nil
}
