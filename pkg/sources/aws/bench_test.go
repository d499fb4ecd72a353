package aws

import (
	"fmt"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

const benchN = 100

// BenchmarkRefreshCycle reads 100 Secrets Manager secrets and 100 SSM
// parameters per cycle against moto and reports the API calls a cycle costs
// for each read strategy (calls/cycle); goals are ⌈n/20⌉ = 5 and ⌈n/10⌉ = 10.
func BenchmarkRefreshCycle(b *testing.B) {
	moto, md := sharedMoto(b), sharedMetadataMock(b)
	seed := newSeeder(b, moto, credentials.NewStaticCredentialsProvider("AKIAPHASENODE0000001", "node-secret-key", ""))
	var smRefs, ssmRefs []sources.Ref
	for i := range benchN {
		name := fmt.Sprintf("bench/sm/%03d", i)
		if _, err := seed.sm.DescribeSecret(testCtx(b), &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)}); err != nil {
			seed.secret(b, name, fmt.Sprintf(`{"password":"p-%03d"}`, i), nil)
			seed.param(b, fmt.Sprintf("/bench/ssm/%03d", i), fmt.Sprintf("v-%03d", i), ssmtypes.ParameterTypeSecureString, true)
		}
		smRefs = append(smRefs, testenv.Ref(b, "aws-sm://"+name+"#password"))
		ssmRefs = append(ssmRefs, testenv.Ref(b, fmt.Sprintf("aws-ssm:///bench/ssm/%03d", i)))
	}
	rec := newRecorder()
	src := newIntegrationSource(b, md, moto, Config{Region: testRegion}, rec, nil)
	ctx := testCtx(b)
	check := func(res []sources.Result) {
		for _, r := range res {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	run := func(b *testing.B, cycle func()) {
		cycle() // warm credentials and moto's first-call cost
		rec.reset()
		b.ResetTimer()
		for b.Loop() {
			cycle()
		}
		b.ReportMetric(float64(rec.total())/float64(b.N), "calls/cycle")
	}

	b.Run("sm/BatchGetSecretValue", func(b *testing.B) {
		batcher := src.SecretsManager().(sources.Batcher)
		run(b, func() { check(batcher.FetchBatch(ctx, smRefs)) })
	})
	b.Run("sm/GetSecretValue", func(b *testing.B) {
		run(b, func() {
			for _, r := range smRefs {
				if _, err := src.SecretsManager().Fetch(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	// The alternative considered and rejected: DescribeSecret to see whether
	// AWSCURRENT moved, GetSecretValue only then. Nothing changes between
	// cycles here, its best case.
	b.Run("sm/DescribeSecret-then-GetSecretValue", func(b *testing.B) {
		client := secretsmanager.NewFromConfig(aws.Config{Region: testRegion, Credentials: src.Credentials(), BaseEndpoint: aws.String(moto), HTTPClient: rec})
		seen := map[string]string{}
		run(b, func() {
			for _, r := range smRefs {
				d, err := client.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(r.Path)})
				if err != nil {
					b.Fatal(err)
				}
				current := ""
				for id, stages := range d.VersionIdsToStages {
					for _, s := range stages {
						if s == stageCurrent {
							current = id
						}
					}
				}
				if seen[r.Path] == current {
					continue
				}
				if _, err := src.SecretsManager().Fetch(ctx, r); err != nil {
					b.Fatal(err)
				}
				seen[r.Path] = current
			}
		})
	})
	b.Run("ssm/GetParameters", func(b *testing.B) {
		batcher := src.SSM().(sources.Batcher)
		run(b, func() { check(batcher.FetchBatch(ctx, ssmRefs)) })
	})
	b.Run("ssm/GetParameter", func(b *testing.B) {
		run(b, func() {
			for _, r := range ssmRefs {
				if _, err := src.SSM().Fetch(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
