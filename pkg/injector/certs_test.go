package injector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// writePair writes a self-signed certificate for cn and its key.
func writePair(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{cn},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func servedCN(t *testing.T, c *Certs) string {
	t.Helper()
	cert, err := c.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.Subject.CommonName
}

func TestCertsReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, certFile, keyFile, "one")
	reg := prometheus.NewRegistry()
	c, err := NewCerts(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, certFile, keyFile, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cn := servedCN(t, c); cn != "one" {
		t.Fatalf("serving %q", cn)
	}
	if changed, err := c.Reload(); changed || err != nil {
		t.Errorf("unchanged files: changed %v, %v", changed, err)
	}

	// Half-replaced: a new certificate with the old key does not load, and
	// the old pair stays in use.
	other := t.TempDir()
	writePair(t, filepath.Join(other, "c"), filepath.Join(other, "k"), "two")
	newCert, _ := os.ReadFile(filepath.Join(other, "c"))
	if err := os.WriteFile(certFile, newCert, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reload(); err == nil {
		t.Error("a mismatched pair loaded")
	}
	if cn := servedCN(t, c); cn != "one" {
		t.Errorf("serving %q after a failed load, want the old pair", cn)
	}
	newKey, _ := os.ReadFile(filepath.Join(other, "k"))
	if err := os.WriteFile(keyFile, newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := c.Reload(); !changed || err != nil {
		t.Fatalf("changed %v, %v", changed, err)
	}
	if cn := servedCN(t, c); cn != "two" {
		t.Errorf("serving %q, want two", cn)
	}
	if v := testutil.ToFloat64(c.expiry); v < float64(time.Now().Unix()) {
		t.Errorf("expiry gauge %v", v)
	}
}

// TestCertsRun: a rewrite of the files reaches new TLS handshakes without a
// restart, woken by the file events.
func TestCertsRun(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, certFile, keyFile, "one")
	c, err := NewCerts(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), certFile, keyFile, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	writePair(t, certFile, keyFile, "two")
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// The interval is an hour: only file events wake it. Run may not watch
	// yet when the pair is first written, so the key is rewritten (same
	// bytes) until an event lands.
	deadline := time.Now().Add(30 * time.Second)
	for servedCN(t, c) != "two" {
		if time.Now().After(deadline) {
			t.Fatal("the rewritten pair was not picked up")
		}
		time.Sleep(20 * time.Millisecond)
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n := testutil.ToFloat64(c.reloads.WithLabelValues("success")); n < 1 {
		t.Errorf("reloads{success} = %v", n)
	}
}
