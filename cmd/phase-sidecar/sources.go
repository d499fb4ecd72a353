package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/file"
)

// The Vault and AWS sources are linked in unless the build leaves them out
// (go build -tags novault,noaws): a file-only sidecar is ~7 MB smaller in
// memory. source_vault*.go and source_aws*.go set these.
var (
	buildVault func(cfg config.Vault, o sourceOptions) (sources.Source, error)
	buildAWS   func(ctx context.Context, cfg config.AWS, o sourceOptions) (awsSources, error)
)

// sourceOptions is what every source constructor gets.
type sourceOptions struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	// awsCredentials is the AWS source's credential provider (an
	// aws.CredentialsProvider), for Vault's aws auth method; nil otherwise.
	awsCredentials any
	// refresh is the default refresh interval: how often Vault's token is
	// looked up while only held leases are read.
	refresh time.Duration
}

// awsSources is what the AWS source offers the wiring.
type awsSources struct {
	sm, ssm     sources.Source
	credentials any
	check       func(context.Context) error
}

// available says why a source kind cannot serve this config, or "" when it
// can. It touches nothing, so validate can call it.
func available(cfg *config.Config, kind string) string {
	switch kind {
	case sources.File:
		return ""
	case sources.AWSSM, sources.AWSSSM:
		if buildAWS == nil {
			return "this binary was built without the AWS source (-tags noaws)"
		}
		return ""
	case sources.Vault:
		if buildVault == nil {
			return "this binary was built without the Vault source (-tags novault)"
		}
		if cfg.Sources.Vault == nil || (cfg.Sources.Vault.Address == "" && os.Getenv("VAULT_ADDR") == "") {
			return "no Vault address: set sources.vault.address or VAULT_ADDR"
		}
		if cfg.Sources.Vault.Auth.Method == "aws" && buildAWS == nil {
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
		out[sources.File] = file.New(file.Options{MaxSize: cfg.MaxFileSize, Logger: opts(sources.File).log})
	}
	vaultAWSAuth := used[sources.Vault] && cfg.Sources.Vault != nil && cfg.Sources.Vault.Auth.Method == "aws"
	var awsCreds any
	if (used[sources.AWSSM] || used[sources.AWSSSM] || vaultAWSAuth) && buildAWS != nil {
		ac := config.AWS{Credentials: "imds"}
		if cfg.Sources.AWS != nil {
			ac = *cfg.Sources.AWS
		}
		a, err := buildAWS(ctx, ac, opts("aws"))
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
	if used[sources.Vault] && buildVault != nil {
		o := opts(sources.Vault)
		o.awsCredentials = awsCreds
		v, err := buildVault(*cfg.Sources.Vault, o)
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
