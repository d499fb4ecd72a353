package reload

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sink"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// testCA issues short-lived certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1000),
		Subject:               pkix.Name{CommonName: "reload test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf returns a PEM certificate and key for 127.0.0.1 with the serial.
func (ca *testCA) leaf(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func tlsBundle(certPEM, keyPEM []byte) []sink.File {
	return []sink.File{
		{Name: "tls.crt", Data: secret.New(certPEM), Mode: 0o444, UID: -1, GID: -1},
		{Name: "tls.key", Data: secret.New(keyPEM), Mode: 0o400, UID: -1, GID: -1},
	}
}

// startNginx runs nginx in the foreground (daemon off, with its master)
// with a prefix in dir, serving TLS on addr from the bundle under secrets.
// It returns the pid file once nginx has written it, which happens after
// the listening socket is bound.
func startNginx(t *testing.T, nginx, dir, addr, secrets string) string {
	t.Helper()
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pidFile := filepath.Join(dir, "logs", "nginx.pid")
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 2;
pid %[1]s/logs/nginx.pid;
error_log %[1]s/logs/error.log info;
events { worker_connections 512; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	server {
		listen %[2]s ssl;
		ssl_certificate %[3]s/tls/tls.crt;
		ssl_certificate_key %[3]s/tls/tls.key;
		location / { return 200 "ok\n"; }
	}
}
`, dir, addr, secrets)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "logs", "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "logs", "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", b)
			}
		}
	})
	// nginx has no readiness hook; poll for the pid file it writes once
	// the socket is bound. The deadline only turns a hang into a failure.
	deadline := time.Now().Add(time.Minute)
	for {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			if pid, _ := strconv.Atoi(string(b[:len(b)-1])); pid == cmd.Process.Pid {
				return pidFile
			}
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Fatalf("nginx exited: %v\n%s", err, b)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx wrote no pid file within a minute")
		}
	}
}

// handshake dials addr and returns the serial of the server's certificate.
func handshake(addr string, pool *x509.CertPool) (int64, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		Config:    &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
	}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return 0, errors.New("no peer certificate")
	}
	return certs[0].SerialNumber.Int64(), nil
}

// TestNginxCertificateRotation: the sink publishes a new certificate and
// key as one bundle, the Reloader sends SIGHUP to the nginx master found
// through its pid file, a TLS client sees the new certificate, and a client
// loop running through the rotation has no failed handshake.
func TestNginxCertificateRotation(t *testing.T) {
	nginx := testenv.Tool(t, "PHASE_TEST_NGINX", "nginx")
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := sink.Open(sink.Options{Dir: secrets, AllowDisk: true})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ca := newCA(t)
	if _, err := out.WriteBundle("tls", tlsBundle(ca.leaf(t, 1))); err != nil {
		t.Fatal(err)
	}

	addr := testenv.Addr(t)
	pidFile := startNginx(t, nginx, filepath.Join(dir, "nginx"), addr, secrets)
	if serial, err := handshake(addr, ca.pool); err != nil || serial != 1 {
		t.Fatalf("first handshake: serial %d, %v", serial, err)
	}

	r := newReloader(t, Config{Signal: &SignalConfig{PIDFile: pidFile}, Coalesce: 10 * time.Millisecond}, Options{})
	if err := r.Check(); err != nil {
		t.Fatal(err)
	}
	results := watch(r)
	runReloader(t, r)
	r.Changed([]string{"TLS_CERT", "TLS_KEY"}, true) // initial sync: nothing

	// The client loop: a fresh connection and handshake each time.
	var (
		mu         sync.Mutex
		total      int
		failures   []error
		afterNew   int
		sawNew     = make(chan struct{})
		stop       = make(chan struct{})
		loopDone   = make(chan struct{})
		closeOnNew sync.Once
		enough     = make(chan struct{})
	)
	go func() {
		defer close(loopDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			serial, err := handshake(addr, ca.pool)
			mu.Lock()
			total++
			if err != nil {
				failures = append(failures, err)
			}
			if serial == 2 {
				afterNew++
				closeOnNew.Do(func() { close(sawNew) })
				if afterNew == 200 {
					close(enough)
				}
			}
			mu.Unlock()
		}
	}()

	if _, err := out.WriteBundle("tls", tlsBundle(ca.leaf(t, 2))); err != nil {
		t.Fatal(err)
	}
	r.Changed([]string{"TLS_CERT", "TLS_KEY"}, false)
	if st := nextStatus(t, results); st.Result != "success" {
		t.Fatalf("reload: %+v", st)
	}
	select {
	case <-sawNew:
	case <-time.After(time.Minute):
		t.Fatal("no handshake saw the new certificate within a minute")
	}
	// Keep the loop going until nginx's old workers have certainly shut
	// down: a few hundred handshakes with the new certificate.
	select {
	case <-enough:
	case <-loopDone:
		t.Fatal("client loop ended")
	}
	close(stop)
	<-loopDone
	if serial, err := handshake(addr, ca.pool); err != nil || serial != 2 {
		t.Fatalf("after rotation: serial %d, %v", serial, err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d handshakes through the rotation, %d with the new certificate, %d failed", total, afterNew, len(failures))
	if len(failures) > 0 {
		t.Fatalf("%d failed handshakes, first: %v", len(failures), failures[0])
	}
}
