//go:build !novault

package main

import (
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/vault"
)

func TestVaultConfig(t *testing.T) {
	env := map[string]string{"VAULT_ADDR": "http://env:8200", "VAULT_CACERT": "/env/ca.pem", "VAULT_NAMESPACE": "team-a"}
	get := func(k string) string { return env[k] }
	got := vaultConfig(config.Vault{Timeout: time.Second, Auth: config.VaultAuth{Method: "approle", Mount: "approle", RoleIDFile: "/r", SecretIDFile: "/s"}}, get)
	want := vault.Config{Address: "http://env:8200", CACert: "/env/ca.pem", Namespace: "team-a", Timeout: time.Second,
		Auth: vault.Auth{Method: "approle", Mount: "approle", RoleIDFile: "/r", SecretIDFile: "/s"}}
	if got != want {
		t.Errorf("from the environment:\n got %+v\nwant %+v", got, want)
	}
	got = vaultConfig(config.Vault{Auth: config.VaultAuth{Method: "aws", Mount: "aws", Role: "r", ServerIDHeader: "vault.example",
		STSRegion: "us-gov-west-1", STSEndpoint: "https://sts.us-gov-west-1.amazonaws.com"}}, get)
	if want := (vault.Auth{Method: "aws", Mount: "aws", Role: "r", ServerIDHeader: "vault.example",
		STSRegion: "us-gov-west-1", STSEndpoint: "https://sts.us-gov-west-1.amazonaws.com"}); got.Auth != want {
		t.Errorf("aws auth:\n got %+v\nwant %+v", got.Auth, want)
	}
	got = vaultConfig(config.Vault{Address: "https://file:8200", CACert: "/file/ca.pem", Namespace: "team-b"}, get)
	if got.Address != "https://file:8200" || got.CACert != "/file/ca.pem" || got.Namespace != "team-b" {
		t.Errorf("the file wins over the environment: %+v", got)
	}
}
