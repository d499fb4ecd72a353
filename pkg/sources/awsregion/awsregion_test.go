package awsregion

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/phase-sidecar/phase-sidecar/internal/sdkpartitions"
)

// TestPartitionsAsTheSDK: the partition table is the SDK's, partition for
// partition, region for region (none with overrides), so a new partition
// or region in an SDK upgrade fails here.
func TestPartitionsAsTheSDK(t *testing.T) {
	t.Parallel()
	sdk := sdkpartitions.Read(t)
	if len(sdk) != len(partitions) {
		t.Errorf("%d partitions, the SDK has %d", len(partitions), len(sdk))
	}
	for i, sp := range sdk {
		if i >= len(partitions) {
			t.Errorf("partition %s missing", sp.ID)
			continue
		}
		p := partitions[i]
		var regions []string
		for r, over := range sp.Regions {
			regions = append(regions, r)
			var o map[string]any
			_ = json.Unmarshal(over, &o)
			delete(o, "description")
			if len(o) > 0 {
				t.Errorf("region %s overrides %v, which PartitionOf does not model", r, o)
			}
		}
		slices.Sort(regions)
		if p.ID != sp.ID || p.RegionRegex != sp.RegionRegex || p.DNSSuffix != sp.Outputs.DNSSuffix || p.DualStackDNSSuffix != sp.Outputs.DualStackDNSSuffix ||
			!sp.Outputs.SupportsFIPS || !sp.Outputs.SupportsDualStack || !slices.Equal(p.Regions, regions) {
			t.Errorf("partition %d:\nours %+v\nSDK  %+v %v", i, p, sp, regions)
		}
	}
}

func TestPartitionOf(t *testing.T) {
	for region, want := range map[string]string{
		"eu-west-1": "aws", "us-future-9": "aws", "us-gov-west-1": "aws-us-gov", "us-gov-future-2": "aws-us-gov",
		"cn-north-1": "aws-cn", "cn-future-3": "aws-cn", "us-isob-east-1": "aws-iso-b", "eusc-de-east-1": "aws-eusc",
		"xx-unknown-1": "aws",
	} {
		if got := PartitionOf(region).ID; got != want {
			t.Errorf("PartitionOf(%q) = %s, want %s", region, got, want)
		}
	}
}

// TestValid: every region of every partition is a region name; host names,
// URLs and pseudo-regions are not.
func TestValid(t *testing.T) {
	for _, p := range partitions {
		for _, r := range p.Regions {
			if got, want := Valid(r), !strings.HasSuffix(r, "-global"); got != want {
				t.Errorf("Valid(%q) = %v", r, got)
			}
		}
	}
	for _, r := range []string{"", "eu-west", "EU-WEST-1", "eu-west-1.evil.example", "x@evil.example/#", "eu-west-1 ", "-eu-west-1", "e-west-1", "aws-global"} {
		if Valid(r) {
			t.Errorf("Valid(%q) = true", r)
		}
	}
}
