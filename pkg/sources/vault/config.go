package vault

import "time"

// Config is what the Vault source needs, with every default and
// environment fallback (VAULT_ADDR, VAULT_CACERT, VAULT_NAMESPACE) already
// applied by the caller; the source checks nothing again. Zero values mean
// what they say: no timeout, KV version detected per mount, no rate limit.
type Config struct {
	Address       string // required
	CACert        string
	ClientCert    string
	ClientKey     string
	TLSServerName string
	Namespace     string
	Timeout       time.Duration // of one request
	KVVersion     int           // 0: detect per mount; 1 or 2 to force
	RateLimit     float64       // requests per second, logins included; 0: unlimited
	RateBurst     int
	Auth          Auth
}

// Auth is the login method and its fields. An empty Method is token (the
// static token of TokenFile, else VAULT_TOKEN from Options.Env); an empty
// Mount is the method's name.
type Auth struct {
	Method          string // token, approle, kubernetes, jwt, aws
	Mount           string
	TokenFile       string // token
	RoleIDFile      string // approle
	SecretIDFile    string // approle
	WrappedSecretID bool   // approle: SecretIDFile holds a response-wrapping token
	Role            string // kubernetes, jwt, aws
	JWTFile         string // kubernetes, jwt
	ServerIDHeader  string // aws: X-Vault-AWS-IAM-Server-ID
	// STSRegion and STSEndpoint are where the aws login's
	// sts:GetCallerIdentity is addressed and for which region it is signed;
	// they must match the auth mount's sts_endpoint and sts_region. Both
	// empty: the global endpoint, signed for us-east-1. A region alone: its
	// regional endpoint in its partition (sts.us-gov-west-1.amazonaws.com,
	// sts.cn-north-1.amazonaws.com.cn). An endpoint alone is signed for
	// us-east-1.
	STSRegion   string // aws
	STSEndpoint string // aws: an http(s) URL
}

func (a Auth) mount() string {
	if a.Mount != "" {
		return a.Mount
	}
	if a.Method == "" {
		return "token"
	}
	return a.Method
}
