//go:build !noaws

package main

import (
	"context"
	"os"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws"
)

// awsBuilt: the AWS source is linked in.
const awsBuilt = ""

func newAWS(ctx context.Context, cfg *config.AWS, o sourceOptions) (awsSources, error) {
	s, err := aws.New(ctx, awsConfig(cfg), aws.Options{Logger: o.log, Metrics: o.metrics, Env: os.Getenv})
	if err != nil {
		return awsSources{}, err
	}
	return awsSources{sm: s.SecretsManager(), ssm: s.SSM(), credentials: s.Credentials(), check: s.Check}, nil
}

// awsConfig turns the validated config into the source's own. A nil c
// (no sources.aws, for Vault's aws login) is the defaults: IMDS
// credentials, the region from the environment or IMDS placement.
func awsConfig(c *config.AWS) aws.Config {
	if c == nil {
		return aws.Config{Credentials: aws.CredentialsIMDS}
	}
	out := aws.Config{Region: c.Region, Credentials: c.Credentials, RateLimit: c.RateLimit}
	if r := c.AssumeRole; r != nil {
		out.AssumeRole = &aws.AssumeRole{
			RoleARN: r.RoleARN, ExternalID: r.ExternalID, SessionName: r.SessionName,
			Duration: r.Duration, SourceIdentity: r.SourceIdentity,
		}
	}
	return out
}
