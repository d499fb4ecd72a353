//go:build novault

package main

import (
	"errors"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// vaultBuilt says why vault refs cannot be served.
const vaultBuilt = "this binary was built without the Vault source (-tags novault)"

// newVault is never reached through a loaded config: available refuses it.
func newVault(config.Vault, sourceOptions, awssdk.CredentialsProvider) (sources.Source, error) {
	return nil, errors.New(vaultBuilt)
}
