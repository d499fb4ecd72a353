//go:build !novault

package main

import (
	"os"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/vault"
)

// vaultBuilt: the Vault source is linked in.
const vaultBuilt = ""

// newVault builds the Vault source; awsCredentials sign its aws login (nil
// unless auth.method is aws).
func newVault(cfg config.Vault, o sourceOptions, awsCredentials awssdk.CredentialsProvider) (sources.Source, error) {
	return vault.New(vaultConfig(cfg, os.Getenv), vault.Options{Logger: o.log, Metrics: o.metrics, AWSCredentials: awsCredentials, Env: os.Getenv, TokenCheck: o.refresh})
}

// vaultConfig turns the validated config into the source's own, with the
// standard environment variables as fallbacks for what the file leaves out.
func vaultConfig(c config.Vault, env func(string) string) vault.Config {
	or := func(v, name string) string {
		if v != "" {
			return v
		}
		return env(name)
	}
	a := c.Auth
	return vault.Config{
		Address:       or(c.Address, "VAULT_ADDR"),
		CACert:        or(c.CACert, "VAULT_CACERT"),
		ClientCert:    c.ClientCert,
		ClientKey:     c.ClientKey,
		TLSServerName: c.TLSServerName,
		Namespace:     or(c.Namespace, "VAULT_NAMESPACE"),
		Timeout:       c.Timeout,
		KVVersion:     c.KVVersion,
		RateLimit:     c.RateLimit,
		RateBurst:     c.RateBurst,
		Auth: vault.Auth{
			Method: a.Method, Mount: a.Mount, TokenFile: a.TokenFile,
			RoleIDFile: a.RoleIDFile, SecretIDFile: a.SecretIDFile, WrappedSecretID: a.WrappedSecretID,
			Role: a.Role, JWTFile: a.JWTFile, ServerIDHeader: a.ServerIDHeader,
			STSRegion: a.STSRegion, STSEndpoint: a.STSEndpoint,
		},
	}
}
