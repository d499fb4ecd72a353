package awsjson

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// sdkRegions lists the regions of the partitions file of the aws-sdk-go-v2
// module this build uses (internal/endpoints/awsrulesfn/partitions.json,
// which the SDK's endpoint rules embed; awsregion's test holds its table to
// the same file).
func sdkRegions(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/aws/aws-sdk-go-v2").Output()
	if err != nil {
		t.Fatalf("go list the SDK module: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "internal", "endpoints", "awsrulesfn", "partitions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Partitions []struct{ Regions map[string]json.RawMessage }
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var regions []string
	for _, p := range f.Partitions {
		for r := range p.Regions {
			regions = append(regions, r)
		}
	}
	return regions
}

// TestEndpointsAsTheSDK: for every region of every partition, and for
// regions the patterns give to a partition and to none, with FIPS,
// dual-stack, both and neither, the endpoint is the one the SDK's Secrets
// Manager and SSM endpoint resolvers derive.
func TestEndpointsAsTheSDK(t *testing.T) {
	t.Parallel()
	regions := []string{"us-future-9", "eu-future-1", "cn-future-3", "us-gov-future-2", "us-iso-future-1", "us-isob-future-1",
		"eu-isoe-future-1", "us-isof-future-1", "eusc-de-future-1", "xx-unknown-1", "zz-nowhere-7"}
	regions = append(regions, sdkRegions(t)...)
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
