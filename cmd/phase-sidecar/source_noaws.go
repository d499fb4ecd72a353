//go:build noaws

package main

import (
	"context"
	"errors"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
)

// awsBuilt says why aws-sm and aws-ssm refs cannot be served.
const awsBuilt = "this binary was built without the AWS source (-tags noaws)"

// newAWS is never reached through a loaded config: available refuses it.
func newAWS(context.Context, *config.AWS, sourceOptions) (awsSources, error) {
	return awsSources{}, errors.New(awsBuilt)
}
