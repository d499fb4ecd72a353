package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

func TestKV(t *testing.T) {
	d := vaultDev(t)
	ctx := context.Background()
	for _, kv := range []int{1, 2} {
		t.Run("v"+strconv.Itoa(kv), func(t *testing.T) {
			mount := unique("kv")
			d.enable(t, mount, "kv", map[string]string{"version": strconv.Itoa(kv)})
			put := func(data map[string]any) {
				if kv == 2 {
					d.write(t, mount+"/data/app", map[string]any{"data": data})
				} else {
					d.write(t, mount+"/app", data)
				}
			}
			put(map[string]any{"password": "s3cr3t-canary-1", "port": 5432, "tags": []string{"a", "b"}})

			s := newSource(t, d, Config{}, Options{})
			whole := testenv.Ref(t, "vault://"+mount+"/app")
			obj, err := s.Fetch(ctx, whole)
			if err != nil {
				t.Fatal(err)
			}
			for field, want := range map[string]string{
				"password": "s3cr3t-canary-1",
				"port":     "5432",
				"tags":     `["a","b"]`,
				"":         `{"password":"s3cr3t-canary-1","port":5432,"tags":["a","b"]}`,
			} {
				if got := testenv.Reveal(t, obj, field); got != want {
					t.Errorf("field %q = %q, want %q", field, got, want)
				}
			}
			if obj.Expands() {
				t.Error("a whole-object ref expands; want one JSON target")
			}
			v1 := obj.Version
			if kv == 2 && v1 != "1" {
				t.Errorf("Version = %q, want 1", v1)
			}
			if kv == 1 && len(v1) != 12 {
				t.Errorf("Version = %q, want a 12-digit hash prefix", v1)
			}
			if !obj.RefreshAt.IsZero() || !obj.Expiry.IsZero() {
				t.Errorf("KV object has RefreshAt %v, Expiry %v; want the engine's interval", obj.RefreshAt, obj.Expiry)
			}

			// A new version is detected.
			put(map[string]any{"password": "s3cr3t-canary-2"})
			obj, err = s.Fetch(ctx, whole)
			if err != nil {
				t.Fatal(err)
			}
			if got := testenv.Reveal(t, obj, "password"); got != "s3cr3t-canary-2" {
				t.Errorf("after update password = %q", got)
			}
			if obj.Version == v1 {
				t.Errorf("Version stayed %q after an update", v1)
			}

			// Each field as its own target.
			split, err := s.Fetch(ctx, testenv.Ref(t, "vault://"+mount+"/app?split=true"))
			if err != nil {
				t.Fatal(err)
			}
			if !split.Expands() || split.Keys()[0] != "password" {
				t.Errorf("?split=true: Expands() = %v, keys %v", split.Expands(), split.Keys())
			}

			if kv == 2 {
				pinned, err := s.Fetch(ctx, testenv.Ref(t, "vault://"+mount+"/app?version=1"))
				if err != nil {
					t.Fatal(err)
				}
				if got := testenv.Reveal(t, pinned, "password"); got != "s3cr3t-canary-1" || pinned.Version != "1" {
					t.Errorf("?version=1: password %q, version %q", got, pinned.Version)
				}
			} else {
				_, err := s.Fetch(ctx, testenv.Ref(t, "vault://"+mount+"/app?version=1"))
				if err == nil || !strings.Contains(err.Error(), "KV version 2") {
					t.Errorf("?version on KV v1: err = %v", err)
				}
			}

			// A deleted key is not found; a missing one neither.
			if kv == 2 {
				if _, err := d.root.Logical().Delete(mount + "/data/app"); err != nil {
					t.Fatal(err)
				}
			} else if _, err := d.root.Logical().Delete(mount + "/app"); err != nil {
				t.Fatal(err)
			}
			for _, ref := range []string{"vault://" + mount + "/app", "vault://" + mount + "/missing"} {
				_, err = s.Fetch(ctx, testenv.Ref(t, ref))
				if !errors.Is(err, sources.ErrNotFound) {
					t.Errorf("%s: err = %v, want ErrNotFound", ref, err)
				}
				checkNoCanary(t, err)
			}
			if kv == 2 {
				if _, err := s.Fetch(ctx, whole); err == nil || !strings.Contains(err.Error(), "deleted") {
					t.Errorf("deleted version: err = %v, want it to say deleted", err)
				}
			}
		})
	}
}

// TestMountLookupOncePerMount checks that the KV version is looked up once
// per mount, not per fetch, and that each fetch is one request.
func TestMountLookupOncePerMount(t *testing.T) {
	d := vaultDev(t)
	mount := unique("kv")
	d.enable(t, mount, "kv", map[string]string{"version": "2"})
	for i := range 3 {
		d.write(t, fmt.Sprintf("%s/data/p%d", mount, i), map[string]any{"data": map[string]any{"k": "v"}})
	}
	s := newSource(t, d, Config{}, Options{})
	c := countRequests(s)
	for range 2 {
		for i := range 3 {
			if _, err := s.Fetch(context.Background(), testenv.Ref(t, fmt.Sprintf("vault://%s/p%d#k", mount, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := c.count("GET /v1/sys/internal/ui/mounts/"); n != 1 {
		t.Errorf("mount lookups = %d, want 1", n)
	}
	if n := c.count("GET /v1/" + mount + "/data/"); n != 6 {
		t.Errorf("data reads = %d, want 6", n)
	}
	if n := c.count("GET /v1/auth/token/lookup-self"); n != 1 {
		t.Errorf("token lookups = %d, want 1", n)
	}
}

func TestKVVersionForced(t *testing.T) {
	d := vaultDev(t)
	mount := unique("kv")
	d.enable(t, mount, "kv", map[string]string{"version": "2"})
	d.write(t, mount+"/data/app", map[string]any{"data": map[string]any{"k": "v"}})
	// A token that may read the data but not look the mount up.
	tok := d.childToken(t, "1h", d.policy(t, mount+"/data/*"))
	s := newSource(t, d, Config{KVVersion: 2}, Options{Env: func(k string) string {
		if k == "VAULT_TOKEN" {
			return tok
		}
		return ""
	}})
	obj, err := s.Fetch(context.Background(), testenv.Ref(t, "vault://"+mount+"/app#k"))
	if err != nil {
		t.Fatal(err)
	}
	if got := testenv.Reveal(t, obj, "k"); got != "v" {
		t.Errorf("k = %q", got)
	}
}

func TestErrors(t *testing.T) {
	d := vaultDev(t)
	ctx := context.Background()
	mount := unique("kv")
	d.enable(t, mount, "kv", map[string]string{"version": "2"})
	d.write(t, mount+"/data/app", map[string]any{"data": map[string]any{"k": "s3cr3t-canary"}})
	limited := d.childToken(t, "1h", d.policy(t, mount+"/data/other"))

	sealed := ownVaultDev(t, servers.VaultOptions{})
	if err := sealed.root.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	tlsServer := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsServer.Close)

	// A rate-limit quota on a mount of its own makes Vault answer 429.
	limitedMount := unique("kv")
	d.enable(t, limitedMount, "kv", map[string]string{"version": "1"})
	d.write(t, limitedMount+"/app", map[string]any{"k": "v"})
	d.write(t, "sys/quotas/rate-limit/"+unique("q"), map[string]any{"path": limitedMount + "/", "rate": 1, "interval": "1h"})

	tests := []struct {
		name    string
		address string
		token   string
		ref     string
		want    error
		text    []string
	}{
		{name: "policy denies", token: limited, ref: "vault://" + mount + "/app#k", want: sources.ErrPermission,
			text: []string{mount + "/app", "policies"}},
		{name: "not found", token: rootToken, ref: "vault://" + mount + "/nope", want: sources.ErrNotFound},
		{name: "bad token", token: "hvs.not-a-token", ref: "vault://" + mount + "/app", want: sources.ErrAuth},
		{name: "sealed", address: "http://" + sealed.addr, token: rootToken, ref: "vault://" + mount + "/app", want: sources.ErrUnavailable,
			text: []string{"sealed"}},
		{name: "unreachable", address: "http://" + testenv.Addr(t), token: rootToken, ref: "vault://" + mount + "/app", want: sources.ErrUnavailable},
		{name: "unknown CA", address: tlsServer.URL, token: rootToken, ref: "vault://" + mount + "/app", want: sources.ErrUnavailable,
			text: []string{"ca_cert"}},
		{name: "rate limited", token: rootToken, ref: "vault://" + limitedMount + "/app", want: sources.ErrThrottled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, d, Config{}, Options{Env: func(k string) string {
				if k == "VAULT_TOKEN" {
					return tt.token
				}
				return ""
			}})
			if tt.address != "" {
				var err error
				cfg := s.cfg
				cfg.Address = tt.address
				s, err = New(cfg, Options{Env: s.env, Logger: s.log})
				if err != nil {
					t.Fatal(err)
				}
			}
			var err error
			for range 3 { // the rate limit needs a few requests
				if _, err = s.Fetch(ctx, testenv.Ref(t, tt.ref)); err != nil {
					break
				}
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			for _, s := range tt.text {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to mention %q", err, s)
				}
			}
			if strings.Contains(err.Error(), tt.token) {
				t.Errorf("error holds the token: %v", err)
			}
			checkNoCanary(t, err)
		})
	}
}

// TestTLS runs a dev server with TLS (-dev-tls): ca_cert makes it work,
// and without it or with a wrong tls_server_name the error says what to
// check.
func TestTLS(t *testing.T) {
	d := ownVaultDev(t, servers.VaultOptions{TLS: true})
	ca := d.caCert
	tests := []struct {
		name string
		cfg  Config
		want string // "" for success
	}{
		{"ca_cert", Config{CACert: ca}, ""},
		{"ca_cert and server name", Config{CACert: ca, TLSServerName: "localhost"}, ""},
		{"no ca_cert", Config{}, "ca_cert"},
		{"wrong server name", Config{CACert: ca, TLSServerName: "vault.example.com"}, "tls_server_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Address = "https://" + d.addr
			s, err := New(cfg, Options{Env: func(k string) string {
				if k == "VAULT_TOKEN" {
					return rootToken
				}
				return ""
			}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Fetch(context.Background(), testenv.Ref(t, "vault://secret/app"))
			if tt.want == "" {
				if !errors.Is(err, sources.ErrNotFound) { // the dev server's secret/ is empty
					t.Fatalf("err = %v, want ErrNotFound over a working TLS connection", err)
				}
				return
			}
			if !errors.Is(err, sources.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrUnavailable mentioning %q", err, tt.want)
			}
		})
	}
}
