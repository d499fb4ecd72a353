package aws

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
)

// The credential sources of "default" mode, in the order the SDK's
// config.LoadDefaultConfig tries them (config/resolve_credentials.go):
// environment keys, web identity from the environment, the shared profile,
// container credentials, then IMDS.
const (
	fromEnv         = "environment"
	fromWebIdentity = "web identity"
	fromProfile     = "shared profile"
	fromContainer   = "container credentials"
	fromIMDS        = "IMDS"
)

// ecsContainerHost serves AWS_CONTAINER_CREDENTIALS_RELATIVE_URI.
const ecsContainerHost = "http://169.254.170.2"

// chain is what "default" mode resolved at start-up: which source supplies
// credentials, and the shared config's region.
type chain struct {
	source string
	// profile names the shared profile in use (for messages).
	profile string
	// static is the provider when it needs no region (environment, profile,
	// container).
	static aws.CredentialsProvider
	// webIdentity, when set, is built once the region is known (it calls STS).
	webIdentity *webIdentity
	// region is the profile's region from the shared config file, or "".
	region string
	// prof is the shared profile, found or not: its endpoint settings
	// apply whichever step supplies the credentials.
	prof *profile
}

type webIdentity struct {
	tokenFile, roleARN, sessionName string
}

// provider builds the web identity provider over the given STS client.
func (w *webIdentity) provider(client stscreds.AssumeRoleWithWebIdentityAPIClient) aws.CredentialsProvider {
	return stscreds.NewWebIdentityRoleProvider(client, w.roleARN, stscreds.IdentityTokenFile(w.tokenFile),
		func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = w.sessionName })
}

// unsupportedKeys are profile settings that need a credential source this
// chain deliberately leaves out (each pulls further SDK packages into every
// build); a profile with any of them is refused rather than skipped.
var unsupportedKeys = []struct{ key, what string }{
	{"sso_session", "IAM Identity Center (SSO)"},
	{"sso_start_url", "IAM Identity Center (SSO)"},
	{"sso_account_id", "IAM Identity Center (SSO)"},
	{"sso_role_name", "IAM Identity Center (SSO)"},
	{"credential_process", "an external credential process"},
	{"role_arn", "a role assumed by the profile"},
	{"source_profile", "a role assumed by the profile"},
	{"credential_source", "a role assumed by the profile"},
	{"web_identity_token_file", "web identity configured in the profile"},
	{"login_session", "console login credentials"},
}

const chainFix = "use environment keys (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), " +
	"web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN) or the instance role, with sources.aws.assume_role for a role"

// resolveChain picks the first credential source whose inputs are present,
// reading the environment through env and the shared files from disk. It
// does no network I/O. imdsDisabled drops the last step.
func resolveChain(ctx context.Context, env func(string) string, imdsDisabled bool) (*chain, error) {
	prof, err := loadProfile(env)
	if err != nil {
		return nil, err
	}
	c := &chain{profile: prof.name, prof: prof, region: prof.get(keyRegion)}

	id, key := env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")
	if id == "" {
		id = env("AWS_ACCESS_KEY")
	}
	if key == "" {
		key = env("AWS_SECRET_KEY")
	}
	switch {
	case id != "" && key != "":
		c.source = fromEnv
		c.static = credentials.NewStaticCredentialsProvider(id, key, env("AWS_SESSION_TOKEN"))
		return c, nil
	case id != "" || key != "":
		return nil, errors.New("aws: credentials: default: only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; set both or neither")
	}

	if file := env("AWS_WEB_IDENTITY_TOKEN_FILE"); file != "" {
		role := env("AWS_ROLE_ARN")
		if role == "" {
			return nil, errors.New("aws: credentials: default: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; set the role to assume with the token")
		}
		c.source = fromWebIdentity
		c.webIdentity = &webIdentity{tokenFile: file, roleARN: role, sessionName: env("AWS_ROLE_SESSION_NAME")}
		return c, nil
	}

	if err := prof.check(); err != nil {
		return nil, err
	}
	if pid, pkey := prof.get(keyAccessKeyID), prof.get(keySecretAccessKey); pid != "" && pkey != "" {
		c.source = fromProfile + " " + prof.name
		c.static = credentials.NewStaticCredentialsProvider(pid, pkey, prof.get(keySessionToken))
		return c, nil
	}

	if rel, full := env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), env("AWS_CONTAINER_CREDENTIALS_FULL_URI"); rel != "" || full != "" {
		endpoint := ecsContainerHost + rel
		if rel == "" {
			endpoint = full
			if err := checkContainerURI(ctx, full); err != nil {
				return nil, err
			}
		}
		c.source = fromContainer
		c.static = containerProvider(endpoint, env)
		return c, nil
	}

	if imdsDisabled {
		return nil, errors.New("aws: credentials: default: no credentials found (no AWS_ACCESS_KEY_ID, AWS_WEB_IDENTITY_TOKEN_FILE, profile keys or container credentials) " +
			"and AWS_EC2_METADATA_DISABLED=true rules out the instance role; " + chainFix)
	}
	c.source = fromIMDS
	return c, nil
}

// check is the profile step's verdict on the profile before its keys are
// used: a profile named explicitly must exist, and a profile that needs a
// credential source this chain leaves out is refused, as is half a key pair
// (the SDK refuses that too).
func (p *profile) check() error {
	if !p.found {
		if p.nameVar == "" {
			return nil
		}
		msg := fmt.Sprintf("aws: credentials: default: %s %q is in neither the shared config nor the credentials file; unset %s or add the profile",
			p.nameVar, p.name, p.nameVar)
		if len(p.skipped) > 0 {
			msg += " (unreadable, so skipped: " + strings.Join(p.skipped, ", ") + ")"
		}
		return errors.New(msg)
	}
	if p.partial {
		return fmt.Errorf("aws: credentials: default: profile %q has only one of aws_access_key_id and aws_secret_access_key; set both", p.name)
	}
	for _, u := range unsupportedKeys {
		if p.get(u.key) != "" {
			return fmt.Errorf("aws: credentials: default: profile %q sets %s (%s, %s), which phase-sidecar does not support; remove it from the profile or %s",
				p.name, u.key, u.what, p.where(u.key), chainFix)
		}
	}
	return nil
}

// containerProvider reads ECS / EKS Pod Identity credentials. The token
// file, re-read on every refresh because it rotates, wins over the token.
func containerProvider(endpoint string, env func(string) string) aws.CredentialsProvider {
	token, tokenFile := env("AWS_CONTAINER_AUTHORIZATION_TOKEN"), env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
	return endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.AuthorizationToken = token
		o.Retryer = newRetryer()
		if tokenFile != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return "", fmt.Errorf("aws: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %w", err)
				}
				return strings.TrimSpace(string(b)), nil
			})
		}
	})
}

// checkContainerURI allows plain HTTP only to loopback and the ECS and EKS
// link-local hosts, as the SDK does: the request carries a bearer token.
func checkContainerURI(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		// Not echoed: a malformed value may still hold a password.
		return errors.New("aws: credentials: default: AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL with a host, such as http://169.254.170.23/v1/credentials")
	}
	if u.Scheme != "http" {
		return nil
	}
	hosts := []string{u.Hostname()}
	if net.ParseIP(u.Hostname()) == nil {
		if hosts, err = net.DefaultResolver.LookupHost(ctx, u.Hostname()); err != nil {
			return fmt.Errorf("aws: credentials: default: AWS_CONTAINER_CREDENTIALS_FULL_URI: resolve %q: %w", u.Hostname(), err)
		}
	}
	for _, h := range hosts {
		ip := net.ParseIP(h)
		if ip == nil || !(ip.IsLoopback() || ip.Equal(net.ParseIP("169.254.170.2")) || ip.Equal(net.ParseIP("169.254.170.23")) || ip.Equal(net.ParseIP("fd00:ec2::23"))) {
			return fmt.Errorf("aws: credentials: default: AWS_CONTAINER_CREDENTIALS_FULL_URI %q: plain http is allowed only to loopback and the ECS/EKS hosts; use https", u.Redacted())
		}
	}
	return nil
}

// profile is the selected shared profile, merged from the config and
// credentials files as the SDK merges them.
type profile struct {
	name string
	// nameVar is the variable that named it ("AWS_PROFILE",
	// "AWS_DEFAULT_PROFILE"), or "" for "default" by default.
	nameVar string
	found   bool
	partial bool // only one of the access key pair
	keys    map[string]iniValue
	// skipped lists default-location files that could not be read.
	skipped []string
}

func (p *profile) get(k string) string { return p.keys[k].str }

func (p *profile) has(k string) bool { _, ok := p.keys[k]; return ok }

// where names the file and line that set k, for messages.
func (p *profile) where(k string) string {
	v := p.keys[k]
	return fmt.Sprintf("%s line %d", v.file, v.line)
}

// loadProfile reads the profile named by AWS_PROFILE, else
// AWS_DEFAULT_PROFILE, else "default", from AWS_CONFIG_FILE (~/.aws/config)
// and AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials). As in the SDK, a
// missing file is an empty one and so is an unreadable one at the default
// location (HOME=/dev/null, a root-owned ~/.aws); a file the environment
// names must be readable if it exists. Whether the profile must exist is the
// profile step's question.
func loadProfile(env func(string) string) (*profile, error) {
	p := &profile{name: env("AWS_PROFILE"), nameVar: "AWS_PROFILE"}
	if p.name == "" {
		p.name, p.nameVar = env("AWS_DEFAULT_PROFILE"), "AWS_DEFAULT_PROFILE"
	}
	if p.name == "" {
		p.name, p.nameVar = "default", ""
	}
	home := env("HOME")
	var merged [2]*iniSection
	for i, f := range []struct {
		envVar, file string
		config       bool
	}{
		{"AWS_CONFIG_FILE", "config", true},
		{"AWS_SHARED_CREDENTIALS_FILE", "credentials", false},
	} {
		path := env(f.envVar)
		named := path != ""
		if !named {
			if home == "" {
				continue
			}
			path = filepath.Join(home, ".aws", f.file)
		}
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil && !named:
			p.skipped = append(p.skipped, fmt.Sprintf("%s (%v)", path, err))
			continue
		case err != nil:
			return nil, fmt.Errorf("aws: credentials: default: read %s (%s): %w; make it readable or unset %s", f.envVar, path, err, f.envVar)
		}
		sections, err := parseINI(path, string(data))
		if err != nil {
			return nil, fmt.Errorf("aws: credentials: default: %w", err)
		}
		if f.config {
			configProfiles(sections)
		} else {
			credentialsProfiles(sections)
		}
		merged[i] = sections[p.name]
	}
	if s := mergeINISection(merged[0], merged[1]); s != nil {
		p.found, p.partial, p.keys = true, s.partial, s.values
	}
	return p, nil
}
