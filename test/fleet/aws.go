package fleet

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
)

// AWS is moto serving Secrets Manager and SSM. By default a pod's even
// paths are secrets (fleet/sI/pJ), its odd paths parameters (/fleet/sI/pJ):
// two sources of half the paths each, so two breakers. Only "sm" or "ssm"
// gives a pod every path from one service, one source as a Vault pod has.
// Pods use static keys from the environment (credentials: default), so no
// STS or IMDS request is part of the load.
//
// One moto process serves about 140 requests a second here, less than 200
// pods ask for; with several, every value is written to each and the proxy
// spreads the requests over them, so the healthy figure is the fleet's
// demand, not the emulator's ceiling.
type AWS struct {
	urls []string
	only string // "", "sm" or "ssm"
	sm   []*secretsmanager.Client
	ssm  []*ssm.Client
}

var _ Backend = (*AWS)(nil)

const (
	awsRegion    = "us-east-1"
	awsKeyID     = "AKIAFLEET00000000001"
	awsSecretKey = "fleet-secret-key"
)

// NewAWS starts instances moto processes with their logs in dir; only is
// "" (both services, half the paths each), "sm" or "ssm".
func NewAWS(t testing.TB, dir, only string, instances int) *AWS {
	t.Helper()
	a := &AWS{only: only}
	for range max(instances, 1) {
		url := servers.Moto(t, dir)
		cfg := aws.Config{
			Region:       awsRegion,
			Credentials:  credentials.NewStaticCredentialsProvider(awsKeyID, awsSecretKey, ""),
			BaseEndpoint: aws.String(url),
		}
		a.urls = append(a.urls, url)
		a.sm = append(a.sm, secretsmanager.NewFromConfig(cfg))
		a.ssm = append(a.ssm, ssm.NewFromConfig(cfg))
	}
	return a
}

func (a *AWS) Name() string {
	if a.only != "" {
		return "aws-" + a.only
	}
	return "aws"
}

// parameter says whether path j of a pod is an SSM parameter.
func (a *AWS) parameter(j int) bool {
	switch a.only {
	case "sm":
		return false
	case "ssm":
		return true
	}
	return j%2 == 1
}

func (a *AWS) URLs() []string { return a.urls }

func (a *AWS) Classes() []string { return []string{"sm", "ssm", "other"} }

// Classify counts by the service in X-Amz-Target.
func (a *AWS) Classify(r *http.Request) string {
	switch target := r.Header.Get("X-Amz-Target"); {
	case strings.HasPrefix(target, "secretsmanager."):
		return "sm"
	case strings.HasPrefix(target, "AmazonSSM."):
		return "ssm"
	default:
		return "other"
	}
}

func (a *AWS) name(i, j int) string { return fmt.Sprintf("fleet/s%d/p%d", i, j) }

func (a *AWS) Ref(i, j int) string {
	if !a.parameter(j) {
		return "aws-sm://" + a.name(i, j)
	}
	return "aws-ssm:///" + a.name(i, j)
}

// Put creates the secrets and parameters (gen 0) or writes a new version.
func (a *AWS) Put(t testing.TB, n, paths, gen int) {
	t.Helper()
	parallel(t, n*paths*len(a.urls), func(k int) error {
		m, k := k/(n*paths), k%(n*paths)
		i, j := k/paths, k%paths
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		name, value := a.name(i, j), Value(i, j, gen)
		var err error
		switch {
		case a.parameter(j):
			_, err = a.ssm[m].PutParameter(ctx, &ssm.PutParameterInput{
				Name: aws.String("/" + name), Value: aws.String(value), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(gen > 0),
			})
		case gen == 0:
			_, err = a.sm[m].CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
		default:
			_, err = a.sm[m].PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
		}
		return err
	})
}

func (a *AWS) Sources(string) string {
	return "sources:\n  aws:\n    region: " + awsRegion + "\n    credentials: default\n"
}

func (a *AWS) Env(proxyURL string) []string {
	return []string{
		"AWS_REGION=" + awsRegion,
		"AWS_ENDPOINT_URL=" + proxyURL,
		"AWS_ACCESS_KEY_ID=" + awsKeyID,
		"AWS_SECRET_ACCESS_KEY=" + awsSecretKey,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
}
