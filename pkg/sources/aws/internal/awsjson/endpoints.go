package awsjson

import (
	"regexp"
	"sync"
)

// partition is an AWS partition as the SDK's endpoint rules see it
// (aws-sdk-go-v2 internal/endpoints/awsrulesfn/partitions.json). The test
// compares this table with the SDK's file, so that an SDK upgrade that adds
// a partition or moves a suffix fails here first.
type partition struct {
	id                 string
	regionRegex        string
	regions            []string
	dnsSuffix          string
	dualStackDNSSuffix string
}

var partitions = []partition{
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

// partitionOf finds region's partition as the SDK does: a listed region,
// else the first partition whose pattern matches, else aws. Every
// partition supports FIPS and dual-stack endpoints.
func partitionOf(region string) partition {
	for _, p := range partitions {
		for _, r := range p.regions {
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
		res[i] = regexp.MustCompile(p.regionRegex)
	}
	return res
})

// Partition names region's partition ("aws", "aws-us-gov", "aws-iso", …).
func Partition(region string) string { return partitionOf(region).id }

// Endpoint is the service's endpoint in region, FIPS and dual-stack
// variants included, as the SDK's endpoint rules for the service derive it.
func (s Service) Endpoint(region string, fips, dualStack bool) string {
	p := partitionOf(region)
	host, suffix := s.Host, p.dnsSuffix
	if fips {
		host += "-fips"
	}
	if dualStack {
		suffix = p.dualStackDNSSuffix
	}
	if s.rule != nil {
		if h, sfx, ok := s.rule(p, fips, dualStack); ok {
			host, suffix = h, sfx
		}
	}
	return "https://" + host + "." + region + "." + suffix
}

// secretsManagerRule: the standard Secrets Manager endpoints of aws,
// aws-us-gov and aws-cn already answer over IPv6, so dual-stack keeps them
// (except FIPS in aws-cn).
func secretsManagerRule(p partition, fips, dualStack bool) (string, string, bool) {
	switch {
	case !dualStack:
		return "", "", false
	case p.id == "aws" || p.id == "aws-us-gov":
		if fips {
			return "secretsmanager-fips", p.dnsSuffix, true
		}
		return "secretsmanager", p.dnsSuffix, true
	case p.id == "aws-cn" && !fips:
		return "secretsmanager", p.dnsSuffix, true
	}
	return "", "", false
}

// ssmRule: SSM's standard endpoints in aws-us-gov are FIPS endpoints, so
// FIPS without dual-stack keeps them.
func ssmRule(p partition, fips, dualStack bool) (string, string, bool) {
	if p.id == "aws-us-gov" && fips && !dualStack {
		return "ssm", p.dnsSuffix, true
	}
	return "", "", false
}
