//go:build !noaws

package main

import (
	"context"
	"os"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws"
)

func init() {
	buildAWS = func(ctx context.Context, cfg config.AWS, o sourceOptions) (awsSources, error) {
		s, err := aws.New(ctx, cfg, aws.Options{Logger: o.log, Metrics: o.metrics, Env: os.Getenv})
		if err != nil {
			return awsSources{}, err
		}
		return awsSources{sm: s.SecretsManager(), ssm: s.SSM(), credentials: s.Credentials(), check: s.Check}, nil
	}
}
