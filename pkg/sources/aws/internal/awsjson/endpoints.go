package awsjson

import "github.com/phase-sidecar/phase-sidecar/pkg/sources/awsregion"

// Endpoint is the service's endpoint in region, FIPS and dual-stack
// variants included, as the SDK's endpoint rules for the service derive it.
func (s Service) Endpoint(region string, fips, dualStack bool) string {
	p := awsregion.PartitionOf(region)
	host, suffix := s.Host, p.DNSSuffix
	if fips {
		host += "-fips"
	}
	if dualStack {
		suffix = p.DualStackDNSSuffix
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
func secretsManagerRule(p awsregion.Partition, fips, dualStack bool) (string, string, bool) {
	switch {
	case !dualStack:
		return "", "", false
	case p.ID == "aws" || p.ID == "aws-us-gov":
		if fips {
			return "secretsmanager-fips", p.DNSSuffix, true
		}
		return "secretsmanager", p.DNSSuffix, true
	case p.ID == "aws-cn" && !fips:
		return "secretsmanager", p.DNSSuffix, true
	}
	return "", "", false
}

// ssmRule: SSM's standard endpoints in aws-us-gov are FIPS endpoints, so
// FIPS without dual-stack keeps them.
func ssmRule(p awsregion.Partition, fips, dualStack bool) (string, string, bool) {
	if p.ID == "aws-us-gov" && fips && !dualStack {
		return "ssm", p.DNSSuffix, true
	}
	return "", "", false
}
