package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// TestExpiryPolicy: a leased value that expires without a replacement is
// stale and expired; with readiness strict a required one makes the sidecar
// not ready (serve_expired keeps it ready); on_expiry remove takes the file
// away and tells the app; a replacement puts everything back.
func TestExpiryPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		onExpiry  string
		readiness string
		ready     bool // after expiry
		removed   bool
	}{
		{"keep, strict", config.OnExpiryKeep, config.ReadinessStrict, false, false},
		{"keep, serve_expired", config.OnExpiryKeep, config.ReadinessServeExpired, true, false},
		{"remove, strict", config.OnExpiryRemove, config.ReadinessStrict, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, config.Secret{Name: "DB", Ref: testenv.Ref(t, "vault://database/creds/app#password"), Required: true, OnExpiry: tc.onExpiry})
			f.cfg.Readiness = tc.readiness
			f.cfg.Breaker.Threshold = 100 // this test is about expiry, not the breaker
			start := time.Now()
			clock := start
			fail := false
			src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
				if fail {
					return sources.Object{}, sources.ErrUnavailable
				}
				o := kv(map[string]string{"password": "p-" + clock.Format(time.RFC3339Nano)})
				o.Expiry = clock.Add(time.Minute)
				o.RefreshAt = clock.Add(40 * time.Second)
				return o, nil
			}}
			e := f.engine(t, map[string]sources.Source{sources.Vault: src})
			e.now = func() time.Time { return clock }
			e.exportSecrets()
			e.runJobs(context.Background(), e.jobs, true)
			if m := e.Missing(); len(m) != 0 {
				t.Fatalf("missing after the first sync: %v", m)
			}
			<-f.changes

			// The source is down from the renewal point on; the job is due at
			// the expiry at the latest, whatever the backoff says.
			fail = true
			clock = start.Add(40 * time.Second)
			e.runJobs(context.Background(), e.jobs, true)
			e.mu.Lock()
			due := e.jobs[0].due
			e.mu.Unlock()
			if due.After(start.Add(time.Minute)) {
				t.Errorf("due %v after the expiry %v", due, start.Add(time.Minute))
			}
			clock = start.Add(time.Minute + time.Second)
			e.runJobs(context.Background(), e.jobs, true)

			st := e.Status()[0]
			if !st.Expired || !st.Stale {
				t.Errorf("status after expiry: expired %v stale %v, want both", st.Expired, st.Stale)
			}
			if got := len(e.Missing()) == 0; got != tc.ready {
				t.Errorf("ready after expiry = %v, want %v (missing %v)", got, tc.ready, e.Missing())
			}
			_, err := os.Stat(filepath.Join(f.dir, "db"))
			if gone := os.IsNotExist(err); gone != tc.removed {
				t.Errorf("file removed = %v, want %v (%v)", gone, tc.removed, err)
			}
			if tc.removed {
				select {
				case c := <-f.changes:
					if !slices.Equal(c.Secrets, []string{"DB"}) || c.Initial {
						t.Errorf("change for the removal = %+v", c)
					}
				default:
					t.Error("the removal was not reported as a change")
				}
			}

			// A later run while still down does nothing more.
			clock = start.Add(2 * time.Minute)
			e.runJobs(context.Background(), e.jobs, true)
			if len(f.changes) != 0 {
				t.Errorf("a second change after the expiry: %+v", <-f.changes)
			}

			// The source is back: a new value, ready, not expired.
			fail = false
			e.runJobs(context.Background(), e.jobs, true)
			st = e.Status()[0]
			if st.Expired || st.Stale || !st.Written || len(e.Missing()) != 0 {
				t.Errorf("after recovery: %+v, missing %v", st, e.Missing())
			}
		})
	}
}

// TestLeadsReachTheSource: the engine gives each object the reload's time
// (Options.ReloadLatency, the reloader's worst case) and the longest renew
// margin of the secrets reading it.
func TestLeadsReachTheSource(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "U", Ref: testenv.Ref(t, "vault://database/creds/app#username"), RenewMargin: config.Margin{Fixed: 5 * time.Minute}},
		config.Secret{Name: "P", Ref: testenv.Ref(t, "vault://database/creds/app#password"), RenewMargin: config.Margin{Fraction: 0.2}},
	)
	f.latency = 7 * time.Second
	var got sources.Lead
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		got = ref.Lead
		return kv(map[string]string{"username": "u", "password": "p"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	_ = e.Once(context.Background())
	want := sources.Lead{Reload: 7 * time.Second, Margin: 5 * time.Minute, Fraction: 0.2}
	if got != want {
		t.Errorf("lead = %+v, want %+v", got, want)
	}
}

// TestFileCertificateExpiry: a PEM certificate read from a file carries its
// NotAfter as the secret's expiry, and an expired one is not written over a
// removal.
func TestFileCertificateExpiry(t *testing.T) {
	notAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	certPEM := selfSigned(t, notAfter)
	f := newFixture(t, config.Secret{Name: "TLS_CRT", Ref: testenv.Ref(t, "file:///vol/tls.crt"), Required: true})
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return sources.Object{Value: secret.New(certPEM), Version: "1"}, nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.File: src})
	e.exportSecrets()
	_ = e.Once(context.Background())
	st := e.Status()[0]
	if st.Expiry == nil || !st.Expiry.Equal(notAfter) {
		t.Fatalf("expiry = %v, want the certificate's NotAfter %v", st.Expiry, notAfter)
	}
}

func selfSigned(t *testing.T, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestBundleOfAnExpandingRef: a directory (or PKI) ref may be a bundle
// member; each field is a file of the bundle under its own name.
func TestBundleOfAnExpandingRef(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "TLS", Ref: testenv.Ref(t, "file:///vol/"), Bundle: "tls", Required: true})
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"tls.crt": "C", "tls.key": "K"}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.File: src})
	if err := e.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.read(t, "tls/tls.crt") != "C" || f.read(t, "tls/tls.key") != "K" {
		t.Error("bundle members not written under their own names")
	}
}

// TestOutputDirReplacedNotReady: when output.dir is replaced behind the
// sidecar, it writes nothing more, counts write errors and is not ready.
func TestOutputDirReplacedNotReady(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "A", Ref: testenv.Ref(t, "vault://secret/a#v"), Required: true})
	val := "one"
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"v": val}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	e.exportSecrets()
	e.runJobs(context.Background(), e.jobs, true)
	if len(e.Missing()) != 0 {
		t.Fatal("not ready after the first sync")
	}
	moved := f.dir + ".old"
	if err := os.Rename(f.dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	val = "two"
	e.runJobs(context.Background(), e.jobs, true)
	if m := e.Missing(); len(m) != 1 {
		t.Errorf("missing %v after the output directory was replaced", m)
	}
	if b, _ := os.ReadFile(filepath.Join(moved, "a")); string(b) != "one" {
		t.Errorf("the replaced directory was written to: %q", b)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "a")); err == nil {
		t.Error("the new directory was written to through the old handle's name")
	}
	if v := testutil.ToFloat64(f.m.SecretWriteErrors.WithLabelValues("A", "vault")); v < 1 {
		t.Errorf("write errors = %v", v)
	}
}
