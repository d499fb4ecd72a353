package awsjson

import (
	"context"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/phase-sidecar/phase-sidecar/internal/sdkpartitions"
)

// TestEndpointsAsTheSDK: for every region of every partition, and for
// regions the patterns give to a partition and to none, with FIPS,
// dual-stack, both and neither, the endpoint is the one the SDK's Secrets
// Manager and SSM endpoint resolvers derive.
func TestEndpointsAsTheSDK(t *testing.T) {
	t.Parallel()
	regions := []string{"us-future-9", "eu-future-1", "cn-future-3", "us-gov-future-2", "us-iso-future-1", "us-isob-future-1",
		"eu-isoe-future-1", "us-isof-future-1", "eusc-de-future-1", "xx-unknown-1", "zz-nowhere-7"}
	regions = append(regions, sdkpartitions.Regions(t)...)
	slices.Sort(regions)
	ctx := context.Background()
	smResolver, ssmResolver := secretsmanager.NewDefaultEndpointResolverV2(), ssm.NewDefaultEndpointResolverV2()
	checked := 0
	for _, region := range regions {
		for _, v := range []struct{ fips, dualStack bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			sm, err := smResolver.ResolveEndpoint(ctx, secretsmanager.EndpointParameters{Region: aws.String(region), UseFIPS: aws.Bool(v.fips), UseDualStack: aws.Bool(v.dualStack)})
			if err != nil {
				t.Errorf("SDK refuses Secrets Manager %s %+v: %v", region, v, err)
				continue
			}
			ps, err := ssmResolver.ResolveEndpoint(ctx, ssm.EndpointParameters{Region: aws.String(region), UseFIPS: aws.Bool(v.fips), UseDualStack: aws.Bool(v.dualStack)})
			if err != nil {
				t.Errorf("SDK refuses SSM %s %+v: %v", region, v, err)
				continue
			}
			if got, want := SecretsManagerService.Endpoint(region, v.fips, v.dualStack), sm.URI.String(); got != want {
				t.Errorf("Secrets Manager %s fips=%v dual-stack=%v: %s, the SDK %s", region, v.fips, v.dualStack, got, want)
			}
			if got, want := SSMService.Endpoint(region, v.fips, v.dualStack), ps.URI.String(); got != want {
				t.Errorf("SSM %s fips=%v dual-stack=%v: %s, the SDK %s", region, v.fips, v.dualStack, got, want)
			}
			checked += 2
		}
	}
	t.Logf("%d endpoints of %d regions checked against the SDK's resolvers", checked, len(regions))
}
