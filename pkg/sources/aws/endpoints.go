package aws

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources/awsregion"
)

// settings is what a credentials mode resolves before the region is known:
// where requests go and with which base credentials.
type settings struct {
	http                 aws.HTTPClient // nil: the SDK's default transport
	region, regionOrigin string         // "" when IMDS placement must say
	// smURL, ssmURL and stsURL are configured endpoints ("": derived from
	// the region and the FIPS and dual-stack settings). A configured
	// endpoint is used as given: FIPS and dual-stack do not apply to it.
	smURL, ssmURL, stsURL string
	fips, dualStack       bool
	base                  aws.CredentialsProvider // before AssumeRole
	sdk                   *aws.Config             // "default" mode: the SDK's loaded config
}

// The SDK's service IDs, which name the endpoint variables
// (AWS_ENDPOINT_URL_SECRETS_MANAGER) and the shared config's services
// section keys (secrets_manager).
const (
	sdkSecretsManager = "Secrets Manager"
	sdkSSM            = "SSM"
	sdkSTS            = "STS"
)

// envSettings resolves "imds" mode's settings from the environment, by the
// SDK's rules for these variables; region, when set, wins.
func envSettings(env func(string) string, region string) (settings, error) {
	set := settings{region: region, regionOrigin: "sources.aws.region"}
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if set.region == "" && env(k) != "" {
			set.region, set.regionOrigin = env(k), k
		}
	}
	var err error
	if set.fips, err = envBool(env, "AWS_USE_FIPS_ENDPOINT"); err != nil {
		return settings{}, err
	}
	if set.dualStack, err = envBool(env, "AWS_USE_DUALSTACK_ENDPOINT"); err != nil {
		return settings{}, err
	}
	ignore, err := envBool(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
	if err != nil || ignore {
		return set, err
	}
	endpoint := func(sdkID string) string {
		if v := env("AWS_ENDPOINT_URL_" + strings.ToUpper(strings.ReplaceAll(sdkID, " ", "_"))); v != "" {
			return v
		}
		return env("AWS_ENDPOINT_URL")
	}
	set.smURL, set.ssmURL, set.stsURL = endpoint(sdkSecretsManager), endpoint(sdkSSM), endpoint(sdkSTS)
	return set, nil
}

// envBool reads a boolean the SDK's way: true or false in any case, unset
// is false, anything else an error.
func envBool(env func(string) string, k string) (bool, error) {
	switch v := env(k); {
	case v == "", strings.EqualFold(v, "false"):
		return false, nil
	case strings.EqualFold(v, "true"):
		return true, nil
	default:
		return false, fmt.Errorf("aws: %s=%q: want true or false", k, v)
	}
}

// The SDK's configuration sources (config.EnvConfig, config.SharedConfig)
// answer through these methods; the SDK's service clients ask them the same
// way (internal/configsources).
type (
	serviceEndpointSource interface {
		GetServiceBaseEndpoint(ctx context.Context, sdkID string) (string, bool, error)
	}
	ignoreEndpointsSource interface {
		GetIgnoreConfiguredEndpoints(ctx context.Context) (bool, bool, error)
	}
	fipsSource interface {
		GetUseFIPSEndpoint(ctx context.Context) (aws.FIPSEndpointState, bool, error)
	}
	dualStackSource interface {
		GetUseDualStackEndpoint(ctx context.Context) (aws.DualStackEndpointState, bool, error)
	}
)

// sdkSettings reads "default" mode's settings from the SDK's loaded config
// the way its generated clients resolve them: the service's endpoint
// variable, else AWS_ENDPOINT_URL, else the profile's services section,
// else its endpoint_url (none of them with ignore_configured_endpoint_urls);
// FIPS and dual-stack from the first source that sets them.
func sdkSettings(ctx context.Context, sdk aws.Config, override string) (settings, error) {
	set := settings{http: sdk.HTTPClient, base: sdk.Credentials, sdk: &sdk, region: sdk.Region}
	set.regionOrigin = regionOrigin(sdk, override)
	var envGlobal, ignore, ignoreFound, fipsFound, dualStackFound bool
	for _, src := range sdk.ConfigSources {
		if env, ok := envConfig(src); ok {
			envGlobal = env.BaseEndpoint != ""
		}
		if p, ok := src.(ignoreEndpointsSource); ok && !ignoreFound {
			v, found, err := p.GetIgnoreConfiguredEndpoints(ctx)
			if err != nil {
				return settings{}, fmt.Errorf("aws: credentials: default: %w", err)
			}
			ignore, ignoreFound = v, found
		}
		if p, ok := src.(fipsSource); ok && !fipsFound {
			v, found, err := p.GetUseFIPSEndpoint(ctx)
			if err != nil {
				return settings{}, fmt.Errorf("aws: credentials: default: %w", err)
			}
			set.fips, fipsFound = v == aws.FIPSEndpointStateEnabled, found
		}
		if p, ok := src.(dualStackSource); ok && !dualStackFound {
			v, found, err := p.GetUseDualStackEndpoint(ctx)
			if err != nil {
				return settings{}, fmt.Errorf("aws: credentials: default: %w", err)
			}
			set.dualStack, dualStackFound = v == aws.DualStackEndpointStateEnabled, found
		}
	}
	if ignore {
		return set, nil
	}
	endpoint := func(sdkID string) string {
		for _, src := range sdk.ConfigSources {
			p, ok := src.(serviceEndpointSource)
			if !ok {
				continue
			}
			v, found, err := p.GetServiceBaseEndpoint(ctx, sdkID)
			if err != nil || !found {
				continue
			}
			if _, fromEnv := envConfig(src); fromEnv || !envGlobal {
				return v
			}
			break // AWS_ENDPOINT_URL beats the profile's services section
		}
		return aws.ToString(sdk.BaseEndpoint)
	}
	set.smURL, set.ssmURL, set.stsURL = endpoint(sdkSecretsManager), endpoint(sdkSSM), endpoint(sdkSTS)
	return set, nil
}

func envConfig(src any) (awsconfig.EnvConfig, bool) {
	switch c := src.(type) {
	case awsconfig.EnvConfig:
		return c, true
	case *awsconfig.EnvConfig:
		return *c, true
	}
	return awsconfig.EnvConfig{}, false
}

// regionOrigin names where the SDK found its region, for messages.
func regionOrigin(sdk aws.Config, override string) string {
	if override != "" {
		return "sources.aws.region"
	}
	for _, src := range sdk.ConfigSources {
		switch c := src.(type) {
		case awsconfig.EnvConfig:
			if c.Region != "" {
				return "AWS_REGION or AWS_DEFAULT_REGION"
			}
		case awsconfig.SharedConfig:
			if c.Region != "" {
				return fmt.Sprintf("the region of shared profile %q", c.Profile)
			}
		}
	}
	return "the AWS SDK's settings"
}

// explicitEndpoint turns FIPS and dual-stack off for a client with a
// configured endpoint: the endpoint is used as given (the SDK's rules would
// refuse every request instead).
func explicitEndpoint(o *sts.EndpointResolverOptions) {
	o.UseFIPSEndpoint = aws.FIPSEndpointStateDisabled
	o.UseDualStackEndpoint = aws.DualStackEndpointStateDisabled
}

func fipsState(on bool) aws.FIPSEndpointState {
	if on {
		return aws.FIPSEndpointStateEnabled
	}
	return aws.FIPSEndpointStateDisabled
}

func dualStackState(on bool) aws.DualStackEndpointState {
	if on {
		return aws.DualStackEndpointStateEnabled
	}
	return aws.DualStackEndpointStateDisabled
}

// checkRegion refuses a region that is not a region name (awsregion.Valid:
// config applies the same rule to sources.aws.region, but the region may
// also come from the environment, a profile or IMDS placement). Every
// partition's regions are supported (awsjson derives their endpoints).
// origin says where the region came from.
func checkRegion(region, origin string) error {
	if !awsregion.Valid(region) {
		return fmt.Errorf("aws: region %q from %s is not a region name such as eu-west-1; correct %s", region, origin, origin)
	}
	return nil
}

// defaultIMDSv6Endpoint is the IMDS endpoint of AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6.
const defaultIMDSv6Endpoint = "http://[fd00:ec2::254]"

// imdsEndpoint is "imds" mode's IMDS endpoint:
// AWS_EC2_METADATA_SERVICE_ENDPOINT, else the IPv6 one when
// AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, else "" (the IPv4 default),
// as the SDK resolves it.
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
