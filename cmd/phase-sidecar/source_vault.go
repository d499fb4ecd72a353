//go:build !novault

package main

import (
	"os"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/vault"
)

func init() {
	buildVault = func(cfg config.Vault, o sourceOptions) (sources.Source, error) {
		creds, _ := o.awsCredentials.(awssdk.CredentialsProvider)
		return vault.New(cfg, vault.Options{Logger: o.log, Metrics: o.metrics, AWSCredentials: creds, Env: os.Getenv, TokenCheck: o.refresh})
	}
}
