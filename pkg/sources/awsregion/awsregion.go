// Package awsregion knows AWS region names: the one rule for what a region
// name looks like, and the partition a region belongs to (its DNS
// suffixes), from which endpoints are derived. It imports no AWS SDK
// package, so that config validation and the Vault source's aws login can
// use it without linking the AWS source.
package awsregion

import (
	"regexp"
	"sync"
)

// Valid says whether name looks like a region name (eu-west-1,
// us-gov-west-1, cn-north-1). The region becomes part of endpoint host
// names, so anything else (x@evil.example/#) must be refused before a
// signed request is built. The SDK's "aws-global" style pseudo-regions are
// not regions of the services the sidecar calls and fail it too.
func Valid(name string) bool { return nameRE().MatchString(name) }

// Pattern is Valid's rule as a regular expression (for the config's JSON
// Schema).
const Pattern = `^[a-z]{2,}(-[a-z0-9]+)*-[0-9]+$`

// nameRE is compiled on first use: most deployments never check a region.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(Pattern) })

// Partition is an AWS partition as the SDK's endpoint rules see it
// (aws-sdk-go-v2 internal/endpoints/awsrulesfn/partitions.json). The test
// compares the table with the SDK's file, so that an SDK upgrade that adds
// a partition or moves a suffix fails here first. Every partition supports
// FIPS and dual-stack endpoints.
type Partition struct {
	ID                 string // aws, aws-cn, aws-us-gov, …
	RegionRegex        string
	Regions            []string
	DNSSuffix          string // amazonaws.com
	DualStackDNSSuffix string // api.aws
}

// partitions is the table, in the SDK's order (which decides ties between
// region patterns).
var partitions = []Partition{
	{"aws", `^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$`, []string{
		"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
		"ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
		"aws-global", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
		"eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1", "me-west-1", "mx-central-1",
		"sa-east-1", "sa-west-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
	}, "amazonaws.com", "api.aws"},
	{"aws-cn", `^cn\-\w+\-\d+$`, []string{"aws-cn-global", "cn-north-1", "cn-northwest-1"},
		"amazonaws.com.cn", "api.amazonwebservices.com.cn"},
	{"aws-eusc", `^eusc\-(de)\-\w+\-\d+$`, []string{"eusc-de-east-1"}, "amazonaws.eu", "api.amazonwebservices.eu"},
	{"aws-iso", `^us\-iso\-\w+\-\d+$`, []string{"aws-iso-global", "us-iso-east-1", "us-iso-west-1"}, "c2s.ic.gov", "api.aws.ic.gov"},
	{"aws-iso-b", `^us\-isob\-\w+\-\d+$`, []string{"aws-iso-b-global", "us-isob-east-1", "us-isob-west-1"}, "sc2s.sgov.gov", "api.aws.scloud"},
	{"aws-iso-e", `^eu\-isoe\-\w+\-\d+$`, []string{"aws-iso-e-global", "eu-isoe-west-1"}, "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"},
	{"aws-iso-f", `^us\-isof\-\w+\-\d+$`, []string{"aws-iso-f-global", "us-isof-east-1", "us-isof-south-1"}, "csp.hci.ic.gov", "api.aws.hci.ic.gov"},
	{"aws-us-gov", `^us\-gov\-\w+\-\d+$`, []string{"aws-us-gov-global", "us-gov-east-1", "us-gov-west-1"}, "amazonaws.com", "api.aws"},
}

// PartitionOf finds region's partition as the SDK does: a listed region,
// else the first partition whose pattern matches, else aws.
func PartitionOf(region string) Partition {
	for _, p := range partitions {
		for _, r := range p.Regions {
			if r == region {
				return p
			}
		}
	}
	for i, re := range regionRegexes() {
		if re.MatchString(region) {
			return partitions[i]
		}
	}
	return partitions[0]
}

// regionRegexes are compiled on first use, not at init: most deployments
// never resolve an AWS endpoint.
var regionRegexes = sync.OnceValue(func() []*regexp.Regexp {
	res := make([]*regexp.Regexp, len(partitions))
	for i, p := range partitions {
		res[i] = regexp.MustCompile(p.RegionRegex)
	}
	return res
})
