package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/file"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/vault"
)

// available says why a source kind cannot serve this config, or "" when it
// can. It touches nothing, so validate can call it.
func available(cfg *config.Config, kind string) string {
	switch kind {
	case sources.File, sources.AWSSM, sources.AWSSSM:
		return ""
	case sources.Vault:
		if cfg.Sources.Vault == nil || (cfg.Sources.Vault.Address == "" && os.Getenv("VAULT_ADDR") == "") {
			return "no Vault address: set sources.vault.address or VAULT_ADDR"
		}
		return ""
	}
	return "unknown source kind"
}

// check is a start-up diagnosis of one source's credentials.
type check struct {
	source string
	run    func(context.Context) error
}

// buildSources creates the sources the config uses, keyed by kind, and the
// start-up checks they offer. None of them talks to the network here.
func buildSources(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics) (map[string]sources.Source, []check, error) {
	used := map[string]bool{}
	for _, s := range cfg.Secrets {
		used[s.Ref.Kind] = true
	}
	logger := func(kind string) *slog.Logger { return log.With("component", "source", "source", kind) }
	out := map[string]sources.Source{}
	var checks []check
	if used[sources.File] {
		out[sources.File] = file.New(file.Options{MaxSize: cfg.MaxFileSize, Logger: logger(sources.File)})
	}
	vaultAWSAuth := used[sources.Vault] && cfg.Sources.Vault != nil && cfg.Sources.Vault.Auth.Method == "aws"
	var awsSrc *aws.Source
	if used[sources.AWSSM] || used[sources.AWSSSM] || vaultAWSAuth {
		ac := config.AWS{Credentials: aws.CredentialsIMDS}
		if cfg.Sources.AWS != nil {
			ac = *cfg.Sources.AWS
		}
		var err error
		awsSrc, err = aws.New(ctx, ac, aws.Options{Logger: logger("aws"), Metrics: m, Env: os.Getenv})
		if err != nil {
			return nil, nil, fmt.Errorf("aws source: %w", err)
		}
		checks = append(checks, check{source: "aws", run: awsSrc.Check})
		if used[sources.AWSSM] {
			out[sources.AWSSM] = awsSrc.SecretsManager()
		}
		if used[sources.AWSSSM] {
			out[sources.AWSSSM] = awsSrc.SSM()
		}
	}
	if used[sources.Vault] {
		var creds awssdk.CredentialsProvider
		if awsSrc != nil {
			creds = awsSrc.Credentials()
		}
		v, err := vault.New(*cfg.Sources.Vault, vault.Options{Logger: logger(sources.Vault), Metrics: m, AWSCredentials: creds, Env: os.Getenv})
		if err != nil {
			return nil, nil, fmt.Errorf("vault source: %w", err)
		}
		out[sources.Vault] = v
	}
	return out, checks, nil
}

// diagnose logs, at start-up, what is wrong with the credentials of sources
// that can tell before the first fetch (the IMDS hop limit, say). Fetches
// retry either way.
func diagnose(ctx context.Context, checks []check, log *slog.Logger) {
	for _, c := range checks {
		if err := c.run(ctx); err != nil {
			log.Warn("source check failed; fetches will retry", "component", "source", "source", c.source, "err", err)
		}
	}
}
