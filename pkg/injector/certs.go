package injector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

// Certs serves the webhook's TLS certificate from a cached key pair that
// follows its files: cert-manager, or a Secret volume the chart mounts,
// replaces them in place. The files' content decides whether anything
// changed; file events only wake the check, and a ticker is the safety net
// (a Secret volume swaps a ..data symlink that some watchers miss).
type Certs struct {
	certFile, keyFile string
	interval          time.Duration
	logger            *slog.Logger

	mu   sync.RWMutex
	cert *tls.Certificate
	sum  [sha256.Size]byte

	reloads *prometheus.CounterVec
	expiry  prometheus.Gauge
}

// NewCerts loads the pair once (an error if it cannot) and registers its
// metrics on reg. interval is the re-check period (0: 10s).
func NewCerts(logger *slog.Logger, reg prometheus.Registerer, certFile, keyFile string, interval time.Duration) (*Certs, error) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	c := &Certs{
		certFile: certFile, keyFile: keyFile, interval: interval,
		logger: logger.With("component", "certs"),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "phase_sidecar_injector_certificate_reloads_total",
			Help: "Loads of a changed serving certificate by result (success, error).",
		}, []string{"result"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "phase_sidecar_injector_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the serving certificate in use.",
		}),
	}
	c.reloads.WithLabelValues("success")
	c.reloads.WithLabelValues("error")
	if _, err := c.Reload(); err != nil {
		return nil, err
	}
	for _, col := range []prometheus.Collector{c.reloads, c.expiry} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// GetCertificate is for tls.Config: the pair loaded last.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

// Reload reads both files and swaps in the pair when their content
// changed. A pair that does not load (one file already replaced, the other
// not yet) leaves the old one in use; the next check tries again.
func (c *Certs) Reload() (changed bool, err error) {
	certPEM, err := os.ReadFile(c.certFile)
	if err != nil {
		return false, fmt.Errorf("certs: read %q: %w", c.certFile, err)
	}
	keyPEM, err := os.ReadFile(c.keyFile)
	if err != nil {
		return false, fmt.Errorf("certs: read %q: %w", c.keyFile, err)
	}
	sum := sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM}, []byte{0}))
	c.mu.RLock()
	same := c.cert != nil && sum == c.sum
	c.mu.RUnlock()
	if same {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("certs: load %q and %q: %w", c.certFile, c.keyFile, err)
	}
	c.mu.Lock()
	c.cert, c.sum = &pair, sum
	c.mu.Unlock()
	c.expiry.Set(float64(pair.Leaf.NotAfter.Unix()))
	return true, nil
}

// Run re-checks the files on events in their directories and every
// interval until ctx ends.
func (c *Certs) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("certs: watch: %w", err)
	}
	defer w.Close()
	for _, dir := range uniq(filepath.Dir(c.certFile), filepath.Dir(c.keyFile)) {
		if err := w.Add(dir); err != nil {
			c.logger.Warn("cannot watch the certificate directory; checking every interval", "path", dir, "err", err)
		}
	}
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-w.Events:
		case err := <-w.Errors:
			c.logger.Warn("certificate watch", "err", err)
			continue
		}
		changed, err := c.Reload()
		switch {
		case err != nil:
			c.reloads.WithLabelValues("error").Inc()
			if !failing { // once per failing spell, not every tick
				c.logger.Error("serving certificate not reloaded; the previous one stays in use", "err", err)
			}
			failing = true
		case changed:
			c.reloads.WithLabelValues("success").Inc()
			c.logger.Info("serving certificate reloaded", "path", c.certFile)
			failing = false
		default:
			failing = false
		}
	}
}

func uniq(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}
