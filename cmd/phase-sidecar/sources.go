package main

import (
	"context"
	"log/slog"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/file"
)

// available says why a source kind cannot serve this config, or "" when it
// can.
func available(cfg *config.Config, kind string) string {
	switch kind {
	case sources.File:
		return ""
	case sources.Vault:
		return "the Vault source is not built yet (see issue 4)"
	case sources.AWSSM, sources.AWSSSM:
		return "the AWS source is not built yet (see issue 5)"
	}
	return "unknown source kind"
}

// buildSources creates the sources the config uses, keyed by kind.
func buildSources(_ context.Context, cfg *config.Config, log *slog.Logger, _ *metrics.Metrics) (map[string]sources.Source, error) {
	used := map[string]bool{}
	for _, s := range cfg.Secrets {
		used[s.Ref.Kind] = true
	}
	out := map[string]sources.Source{}
	if used[sources.File] {
		out[sources.File] = file.New(file.Options{MaxSize: cfg.MaxFileSize, Logger: log.With("component", "source", "source", sources.File)})
	}
	return out, nil
}
