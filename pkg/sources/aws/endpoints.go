package aws

import (
	"fmt"
	"regexp"
	"strings"
)

// regionRE is what a region name looks like; the region becomes part of
// the endpoint's host name, so anything else (x@evil.example/#) is refused
// before a signed request is built. Twin of pkg/config's regionRE
// (walk.go); keep the two equal.
var regionRE = regexp.MustCompile(`^[a-z]{2,}(-[a-z0-9]+)*-[0-9]+$`)

// otherPartitions are the region prefixes of the partitions whose endpoints
// serviceEndpoint does not derive (it knows aws, aws-cn and aws-us-gov).
var otherPartitions = []struct{ prefix, partition string }{
	{"us-iso-", "aws-iso"},
	{"us-isob-", "aws-iso-b"},
	{"eu-isoe-", "aws-iso-e"},
	{"us-isof-", "aws-iso-f"},
	{"eusc-", "aws-eusc"},
}

// checkRegion refuses a region that is not a region name, or that belongs
// to a partition whose endpoints must then be configured explicitly. origin
// says where the region came from.
func (s *Source) checkRegion(region, origin string) error {
	if !regionRE.MatchString(region) {
		return fmt.Errorf("aws: region %q from %s is not a region name such as eu-west-1; correct %s", region, origin, origin)
	}
	for _, p := range otherPartitions {
		if strings.HasPrefix(region, p.prefix) {
			if missing := s.missingEndpoints(false); len(missing) > 0 {
				return fmt.Errorf("aws: region %q from %s is in the %s partition, whose endpoints phase-sidecar does not derive (it knows aws, aws-cn and aws-us-gov); "+
					"set %s to the partition's endpoints", region, origin, p.partition, strings.Join(missing, " and "))
			}
		}
	}
	return nil
}

// endpointVars are the explicit endpoint variables of the services in use;
// AWS_ENDPOINT_URL stands in for each.
var endpointVars = []string{"AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_STS"}

// missingEndpoints lists the services' endpoint variables that are unset
// (and not covered by AWS_ENDPOINT_URL); STS counts only when withSTS.
func (s *Source) missingEndpoints(withSTS bool) []string {
	var missing []string
	for _, v := range endpointVars {
		if v == "AWS_ENDPOINT_URL_STS" && !withSTS {
			continue
		}
		if s.endpoint(v) == "" {
			missing = append(missing, v)
		}
	}
	return missing
}

// endpointFlags are the SDK settings that select other endpoints than the
// standard ones. This client builds standard endpoints only, so a setting
// that is on is refused unless explicit endpoints make it moot.
var endpointFlags = []struct{ env, key, what string }{
	{"AWS_USE_FIPS_ENDPOINT", "use_fips_endpoint", "FIPS endpoints"},
	{"AWS_USE_DUALSTACK_ENDPOINT", "use_dualstack_endpoint", "dual-stack (IPv6) endpoints"},
}

// profileClientKeys are shared-profile settings that change where or how
// the SDK's clients connect. They are not read here, and ignoring them
// would silently talk to other endpoints or trust other CAs than the SDK
// would, so a profile that sets one is refused.
var profileClientKeys = []struct{ key, fix string }{
	{"endpoint_url", "set AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL_STS) instead"},
	{"services", "set AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL_SSM and AWS_ENDPOINT_URL_STS instead"},
	{"ca_bundle", "set AWS_CA_BUNDLE instead"},
	{"ec2_metadata_service_endpoint", "set AWS_EC2_METADATA_SERVICE_ENDPOINT instead"},
	{"ec2_metadata_service_endpoint_mode", "set AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE instead"},
}

// checkEndpointSettings refuses the SDK endpoint settings this client does
// not implement, from the environment and (prof non-nil) the shared
// profile. withSTS says whether STS is called (assume_role, web identity).
func (s *Source) checkEndpointSettings(prof *profile, withSTS bool) error {
	inProfile := prof != nil && prof.found
	for _, f := range endpointFlags {
		v, origin := s.env(f.env), f.env+"="+s.env(f.env)
		switch {
		case v == "" && inProfile && prof.has(f.key):
			// As the SDK: a value other than true is false.
			v, origin = prof.get(f.key), fmt.Sprintf("profile %q sets %s = %s (%s)", prof.name, f.key, prof.get(f.key), prof.where(f.key))
			if !strings.EqualFold(v, "true") {
				continue
			}
		case v == "" || strings.EqualFold(v, "false"):
			continue
		case !strings.EqualFold(v, "true"):
			return fmt.Errorf("aws: %s=%q: want true or false", f.env, v)
		}
		if missing := s.missingEndpoints(withSTS); len(missing) > 0 {
			return fmt.Errorf("aws: %s, but phase-sidecar derives only the standard endpoints and will not silently use them instead of %s; "+
				"set %s to the endpoints you want (or AWS_ENDPOINT_URL for all), or turn the setting off",
				origin, f.what, strings.Join(missing, ", "))
		}
	}
	// The SDK would ignore the AWS_ENDPOINT_URL variables this client uses.
	ignore, origin := s.env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
	if ignore == "" && inProfile && prof.has("ignore_configured_endpoint_urls") {
		ignore, origin = prof.get("ignore_configured_endpoint_urls"), fmt.Sprintf("profile %q sets ignore_configured_endpoint_urls (%s)", prof.name, prof.where("ignore_configured_endpoint_urls"))
	}
	if strings.EqualFold(ignore, "true") && len(s.missingEndpoints(true)) < len(endpointVars) {
		return fmt.Errorf("aws: %s asks to ignore the configured AWS_ENDPOINT_URL variables, which phase-sidecar always uses; unset either", origin)
	}
	if !inProfile {
		return nil
	}
	for _, k := range profileClientKeys {
		if prof.get(k.key) != "" {
			return fmt.Errorf("aws: credentials: default: profile %q sets %s (%s), which phase-sidecar does not read; remove it from the profile and %s",
				prof.name, k.key, prof.where(k.key), k.fix)
		}
	}
	return nil
}

// defaultIMDSv6Endpoint is the IMDS endpoint of AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6.
const defaultIMDSv6Endpoint = "http://[fd00:ec2::254]"

// imdsEndpoint is the IMDS endpoint: AWS_EC2_METADATA_SERVICE_ENDPOINT,
// else the IPv6 one when AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, else
// "" (the IPv4 default), as the SDK resolves it.
func imdsEndpoint(env func(string) string) (string, error) {
	mode := strings.TrimSpace(env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"))
	switch {
	case mode == "", strings.EqualFold(mode, "IPv4"), strings.EqualFold(mode, "IPv6"):
	default:
		return "", fmt.Errorf("aws: AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=%q: want IPv4 or IPv6", mode)
	}
	if ep := env("AWS_EC2_METADATA_SERVICE_ENDPOINT"); ep != "" {
		return ep, nil
	}
	if strings.EqualFold(mode, "IPv6") {
		return defaultIMDSv6Endpoint, nil
	}
	return "", nil
}
