package servers

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// DefaultVaultToken is the dev server's root token when VaultOptions.Token
// is empty.
const DefaultVaultToken = "phase-test-root"

// VaultOptions are a dev server's settings; the zero value is plain HTTP
// with DefaultVaultToken.
type VaultOptions struct {
	Token string // the root token id
	Audit bool   // enable a file audit device writing to VaultServer.AuditLog
	TLS   bool   // -dev-tls, its certificates in dir (VaultServer.CACert)
}

// VaultServer is a running `vault server -dev`.
type VaultServer struct {
	HostPort string      // 127.0.0.1:PORT
	URL      string      // http://HostPort, or https:// with TLS
	Token    string      // the root token
	Root     *api.Client // a client with the root token
	AuditLog string      // the audit device's file, with Audit
	CACert   string      // the CA of the server's certificate, with TLS
}

// Vault runs `vault server -dev` on a free port of 127.0.0.1 with its log
// and HOME in dir, and returns once the root token works. The log, without
// the root token and unseal key, is printed when the test fails.
func Vault(t testing.TB, dir string, o VaultOptions) *VaultServer {
	t.Helper()
	bin := testenv.Tool(t, "PHASE_TEST_VAULT", "vault")
	if o.Token == "" {
		o.Token = DefaultVaultToken
	}
	port := strconv.Itoa(testenv.FreePort(t))
	v := &VaultServer{HostPort: "127.0.0.1:" + port, URL: "http://127.0.0.1:" + port, Token: o.Token}
	args := []string{"server", "-dev", "-dev-listen-address=" + v.HostPort, "-dev-root-token-id=" + o.Token, "-dev-no-store-token"}
	if o.TLS {
		v.URL = "https://" + v.HostPort
		v.CACert = filepath.Join(dir, "vault-ca.pem")
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+dir)
	}
	logFile := filepath.Join(dir, "vault-"+port+".log")
	Process(t, logFile, []string{"HOME=" + dir, "VAULT_ADDR=" + v.URL}, bin, args...)
	redact := func(log string) string {
		var b strings.Builder
		for _, line := range strings.SplitAfter(log, "\n") {
			if !strings.Contains(line, "Root Token:") && !strings.Contains(line, "Unseal Key:") {
				b.WriteString(strings.ReplaceAll(line, o.Token, "<root token>"))
			}
		}
		return b.String()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vault dev server output:\n%s", readLog(logFile, redact))
		}
	})
	waitUp(t, "vault dev server", logFile, vaultReadyWithin, redact, func() error {
		cfg := &api.Config{Address: v.URL}
		if o.TLS {
			cfg = api.DefaultConfig()
			cfg.Address = v.URL
			if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: v.CACert}); err != nil {
				return err
			}
		}
		c, err := api.NewClient(cfg)
		if err != nil {
			return err
		}
		c.SetToken(o.Token)
		if _, err := c.Auth().Token().LookupSelf(); err != nil {
			return errors.New(strings.ReplaceAll(err.Error(), o.Token, "<root token>"))
		}
		v.Root = c
		return nil
	})
	if o.Audit {
		v.AuditLog = filepath.Join(dir, "audit.log")
		if err := v.Root.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{
			Type: "file", Options: map[string]string{"file_path": v.AuditLog},
		}); err != nil {
			t.Fatalf("enable the audit device: %v", err)
		}
	}
	return v
}
