package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/file"
)

// The Vault and AWS sources are linked in unless the build leaves them out
// (go build -tags novault,noaws): a file-only sidecar is ~7 MB smaller in
// memory. Each is wired in a file of its own build tag (source_vault.go,
// source_aws.go) whose counterpart for the opposite tag (source_novault.go,
// source_noaws.go) says it was built without it:
//
//	vaultBuilt, awsBuilt  string: "" when linked in, else why not
//	newVault(cfg, o, awsCredentials) (sources.Source, error)
//	newAWS(ctx, cfg, o) (awsSources, error)
//
// Credentials for Vault's aws login travel as the SDK's
// aws.CredentialsProvider: that interface costs a file-only binary
// ~11 KB (it links the SDK's aws package and smithy-go's small ones, none
// with start-up work), not the SDK's clients.

// sourceOptions is what every source constructor gets.
type sourceOptions struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	// refresh is the default refresh interval: how often Vault's token is
	// looked up while only held leases are read.
	refresh time.Duration
}

// awsSources is what the AWS source offers the wiring.
type awsSources struct {
	sm, ssm     sources.Source
	credentials awssdk.CredentialsProvider // for Vault's aws auth method
	check       func(context.Context) error
}

// available says why a source kind cannot serve this config, or "" when it
// can. It touches nothing, so validate can call it.
func available(cfg *config.Config, kind string) string {
	switch kind {
	case sources.File:
		return ""
	case sources.AWSSM, sources.AWSSSM:
		return awsBuilt
	case sources.Vault:
		if vaultBuilt != "" {
			return vaultBuilt
		}
		if cfg.Sources.Vault == nil || (cfg.Sources.Vault.Address == "" && os.Getenv("VAULT_ADDR") == "") {
			return "no Vault address: set sources.vault.address or VAULT_ADDR"
		}
		if cfg.Sources.Vault.Auth.Method == "aws" && awsBuilt != "" {
			return "Vault's aws auth method needs the AWS source, which this binary was built without (-tags noaws)"
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
	opts := func(kind string) sourceOptions {
		return sourceOptions{log: log.With("component", "source", "source", kind), metrics: m, refresh: cfg.Refresh}
	}
	out := map[string]sources.Source{}
	var checks []check
	if used[sources.File] {
		out[sources.File] = file.New(file.Options{MaxSize: cfg.MaxFileSize, Logger: opts(sources.File).log, Recheck: cfg.Sources.File.Recheck})
	}
	vaultAWSAuth := used[sources.Vault] && cfg.Sources.Vault != nil && cfg.Sources.Vault.Auth.Method == "aws"
	var awsCreds awssdk.CredentialsProvider
	if used[sources.AWSSM] || used[sources.AWSSSM] || vaultAWSAuth {
		a, err := newAWS(ctx, cfg.Sources.AWS, opts("aws"))
		if err != nil {
			return nil, nil, fmt.Errorf("aws source: %w", err)
		}
		checks = append(checks, check{source: "aws", run: a.check})
		awsCreds = a.credentials
		if used[sources.AWSSM] {
			out[sources.AWSSM] = a.sm
		}
		if used[sources.AWSSSM] {
			out[sources.AWSSSM] = a.ssm
		}
	}
	if used[sources.Vault] {
		v, err := newVault(*cfg.Sources.Vault, opts(sources.Vault), awsCreds)
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
