package aws

import (
	"context"
	"errors"
	"fmt"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/servers"
)

const (
	roleAccount = "111122223333"
	roleARN     = "arn:aws:iam::" + roleAccount + ":role/phase-reader"
	externalID  = "phase-external-id-42"
)

// seeder writes test data into moto with static keys, as an admin would.
type seeder struct {
	sm  *secretsmanager.Client
	ssm *ssm.Client
}

func newSeeder(t testing.TB, moto string, creds aws.CredentialsProvider) *seeder {
	t.Helper()
	cfg := aws.Config{Region: testRegion, Credentials: creds, BaseEndpoint: aws.String(moto)}
	return &seeder{sm: secretsmanager.NewFromConfig(cfg), ssm: ssm.NewFromConfig(cfg)}
}

// roleSeeder seeds the account of the role the source assumes: moto keeps a
// store per account, and an assumed role's keys map to the role's account.
func roleSeeder(t testing.TB, moto string) *seeder {
	t.Helper()
	admin := credentials.NewStaticCredentialsProvider("AKIAADMIN00000000001", "admin-secret", "")
	client := sts.NewFromConfig(aws.Config{Region: testRegion, Credentials: admin, BaseEndpoint: aws.String(moto)})
	out, err := client.AssumeRole(testCtx(t), &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("seeder")})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	return newSeeder(t, moto, credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken))
}

func (s *seeder) secret(t testing.TB, name, str string, bin []byte) string {
	t.Helper()
	in := &secretsmanager.CreateSecretInput{Name: aws.String(name)}
	if bin != nil {
		in.SecretBinary = bin
	} else {
		in.SecretString = aws.String(str)
	}
	out, err := s.sm.CreateSecret(testCtx(t), in)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.VersionId)
}

func (s *seeder) rotate(t testing.TB, name, str string) string {
	t.Helper()
	out, err := s.sm.PutSecretValue(testCtx(t), &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(str)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.VersionId)
}

func (s *seeder) param(t testing.TB, name, value string, typ ssmtypes.ParameterType, overwrite bool) int64 {
	t.Helper()
	out, err := s.ssm.PutParameter(testCtx(t), &ssm.PutParameterInput{
		Name: aws.String(name), Value: aws.String(value), Type: typ, Overwrite: aws.Bool(overwrite),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Version
}

// newIntegrationSource builds a source whose only credential supply is the
// metadata mock: the environment it sees is the map below, no shared files.
func newIntegrationSource(t testing.TB, md *servers.IMDS, moto string, cfg Config, rec *recorder, m *metrics.Metrics) *Source {
	t.Helper()
	o := Options{
		Metrics: m,
		Env: envMap(
			"AWS_ENDPOINT_URL", moto,
			"AWS_EC2_METADATA_SERVICE_ENDPOINT", md.URL,
			// These must be ignored in IMDS mode.
			"AWS_ACCESS_KEY_ID", "AKIASHOULDNOTBEUSED0",
			"AWS_SECRET_ACCESS_KEY", "should-not-be-used",
			"AWS_CONFIG_FILE", "/dev/null",
			"AWS_SHARED_CREDENTIALS_FILE", "/dev/null",
		),
	}
	if rec != nil {
		o.HTTPClient = rec
	}
	s, err := New(testCtx(t), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIntegrationSecretsManagerThroughAssumeRole(t *testing.T) {
	t.Parallel()
	moto, md := sharedMoto(t), sharedMetadataMock(t)
	seed := roleSeeder(t, moto)
	name := uniq(t, "prod/phase/db-")
	v1 := seed.secret(t, name, `{"password":"first-pass","user":"phase"}`, nil)
	binName := uniq(t, "prod/phase/tls-")
	binVersion := seed.secret(t, binName, "", []byte{0, 1, 2, 0xff})

	rec := newRecorder()
	reg := prometheus.NewPedanticRegistry()
	m := metrics.New(reg, "test", "test")
	src := newIntegrationSource(t, md, moto, Config{
		Region:      testRegion,
		Credentials: CredentialsIMDS,
		AssumeRole:  &AssumeRole{RoleARN: roleARN, ExternalID: externalID, SessionName: "phase-test", Duration: 15 * time.Minute, SourceIdentity: "phase-sidecar"},
	}, rec, m)
	ctx := testCtx(t)
	if err := src.Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	// AssumeRole carried the role, the external id and the source identity.
	bodies := strings.Join(rec.stsBodies(), "\n")
	for _, want := range []string{"Action=AssumeRole", "ExternalId=" + externalID, "SourceIdentity=phase-sidecar",
		"RoleArn=" + strings.NewReplacer(":", "%3A", "/", "%2F").Replace(roleARN)} {
		if !strings.Contains(bodies, want) {
			t.Errorf("STS request lacks %q:\n%s", want, bodies)
		}
	}
	// Only IMDS supplied credentials: the instance role's key signed the
	// AssumeRole call, the assumed role's keys everything after it.
	if got := rec.signers("sts"); fmt.Sprint(got) != "[AKIAPHASENODE0000001]" {
		t.Errorf("STS signed by %v, want the instance role's key only", got)
	}
	sm := src.SecretsManager()

	o, err := sm.Fetch(ctx, testenv.Ref(t, "aws-sm://"+name+"#password"))
	if err != nil {
		t.Fatal(err)
	}
	if got := testenv.Reveal(t, o, "password"); got != "first-pass" || o.Version != v1 {
		t.Fatalf("first read: %q version %q, want first-pass %q", got, o.Version, v1)
	}

	// Rotation the way moto can do it: PutSecretValue moves AWSCURRENT.
	v2 := seed.rotate(t, name, `{"password":"second-pass","user":"phase"}`)
	o, err = sm.Fetch(ctx, testenv.Ref(t, "aws-sm://"+name+"#password"))
	if err != nil {
		t.Fatal(err)
	}
	if got := testenv.Reveal(t, o, "password"); got != "second-pass" || o.Version != v2 || v2 == v1 {
		t.Fatalf("after rotation: %q version %q, want second-pass %q (old %q)", got, o.Version, v2, v1)
	}
	prev, err := sm.Fetch(ctx, testenv.Ref(t, "aws-sm://"+name+"?stage=AWSPREVIOUS#password"))
	if err != nil {
		t.Fatal(err)
	}
	if got := testenv.Reveal(t, prev, "password"); got != "first-pass" || prev.Version != v1 {
		t.Fatalf("AWSPREVIOUS: %q version %q, want first-pass %q", got, prev.Version, v1)
	}
	byID, err := sm.Fetch(ctx, testenv.Ref(t, "aws-sm://"+name+"?version_id="+v1))
	if err != nil || byID.Version != v1 {
		t.Fatalf("version_id: %v version %q", err, byID.Version)
	}

	bin, err := sm.Fetch(ctx, testenv.Ref(t, "aws-sm://"+binName))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(bin.Value.Reveal()); got != "\x00\x01\x02\xff" || bin.Version != binVersion {
		t.Fatalf("binary: %q version %q", got, bin.Version)
	}

	_, err = sm.Fetch(ctx, testenv.Ref(t, "aws-sm://prod/phase/missing-"+t.Name()))
	if !errors.Is(err, sources.ErrNotFound) || !strings.Contains(err.Error(), "missing-") {
		t.Fatalf("missing secret: %v, want ErrNotFound naming the secret", err)
	}

	// A batch answers the same, in one call for up to 20 secrets.
	rec.reset()
	res := sm.(sources.Batcher).FetchBatch(ctx, []sources.Ref{
		testenv.Ref(t, "aws-sm://"+name+"#user"),
		testenv.Ref(t, "aws-sm://"+binName),
		testenv.Ref(t, "aws-sm://prod/phase/missing-"+t.Name()),
	})
	if res[0].Err != nil || testenv.Reveal(t, res[0].Object, "user") != "phase" || res[0].Object.Version != v2 {
		t.Errorf("batch[0]: %+v", res[0])
	}
	if res[1].Err != nil || res[1].Object.Version != binVersion {
		t.Errorf("batch[1]: %+v", res[1])
	}
	if !errors.Is(res[2].Err, sources.ErrNotFound) {
		t.Errorf("batch[2]: %v, want ErrNotFound", res[2].Err)
	}
	if n := rec.count("secretsmanager.BatchGetSecretValue"); n != 1 || rec.count("secretsmanager.GetSecretValue") != 0 {
		t.Errorf("batch used %d BatchGetSecretValue and %d GetSecretValue calls, want 1 and 0", n, rec.count("secretsmanager.GetSecretValue"))
	}

	if got := rec.signers("secretsmanager"); len(got) != 1 || got[0] == "AKIAPHASENODE0000001" || got[0] == "AKIASHOULDNOTBEUSED0" {
		t.Errorf("Secrets Manager signed by %v, want the assumed role's key only", got)
	}
	if got := testutil.ToFloat64(m.CredentialExpiry.WithLabelValues(sources.AWSSM)); got < float64(time.Now().Unix()) {
		t.Errorf("credential expiry metric %v is not in the future", got)
	}
	md.AssertNoIMDSv1(t)
}

func TestIntegrationSSM(t *testing.T) {
	t.Parallel()
	moto, md := sharedMoto(t), sharedMetadataMock(t)
	// No assume role: the instance role's keys map to moto's default account.
	seed := newSeeder(t, moto, credentials.NewStaticCredentialsProvider("AKIAPHASENODE0000001", "node-secret-key", ""))
	base := uniq(t, "/phase-")
	seed.param(t, base+"/google/client_secret", "s3cr3t-one", ssmtypes.ParameterTypeSecureString, false)
	seed.param(t, base+"/hosts", "a.example,b.example", ssmtypes.ParameterTypeStringList, false)
	// 13 parameters under one path: more than one page of 10.
	for i := range 13 {
		seed.param(t, fmt.Sprintf("%s/app/nested/p%02d", base, i), fmt.Sprintf("value-%02d", i), ssmtypes.ParameterTypeSecureString, false)
	}

	rec := newRecorder()
	// Region from IMDS placement: none configured.
	src := newIntegrationSource(t, md, moto, Config{}, rec, nil)
	ctx := testCtx(t)
	p := src.SSM()

	o, err := p.Fetch(ctx, testenv.Ref(t, "aws-ssm://"+base+"/google/client_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(o.Value.Reveal()); got != "s3cr3t-one" || o.Version != "1" {
		t.Fatalf("SecureString: %q version %q, want decrypted value, version 1", got, o.Version)
	}
	if src.Region() != testRegion {
		t.Errorf("region %q, want %q from IMDS placement", src.Region(), testRegion)
	}
	list, err := p.Fetch(ctx, testenv.Ref(t, "aws-ssm://"+base+"/hosts"))
	if err != nil || string(list.Value.Reveal()) != "a.example,b.example" {
		t.Fatalf("StringList: %v %q", err, list.Value.Reveal())
	}

	// Overwrite: a new version, and the old one stays addressable.
	if v := seed.param(t, base+"/google/client_secret", "s3cr3t-two", ssmtypes.ParameterTypeSecureString, true); v != 2 {
		t.Fatalf("overwrite gave version %d", v)
	}
	o, err = p.Fetch(ctx, testenv.Ref(t, "aws-ssm://"+base+"/google/client_secret"))
	if err != nil || string(o.Value.Reveal()) != "s3cr3t-two" || o.Version != "2" {
		t.Fatalf("after overwrite: %v %q version %q", err, o.Value.Reveal(), o.Version)
	}
	old, err := p.Fetch(ctx, testenv.Ref(t, "aws-ssm://"+base+"/google/client_secret?version=1"))
	if err != nil || string(old.Value.Reveal()) != "s3cr3t-one" || old.Version != "1" {
		t.Fatalf("?version=1: %v %q version %q", err, old.Value.Reveal(), old.Version)
	}

	rec.reset()
	tree, err := p.Fetch(ctx, testenv.Ref(t, "aws-ssm://"+base+"/app/?recursive=true"))
	if err != nil {
		t.Fatal(err)
	}
	if !tree.Expands() || len(tree.Fields) != 13 {
		t.Fatalf("recursive: expands=%v, %d fields %v", tree.Expands(), len(tree.Fields), tree.Keys())
	}
	if got := testenv.Reveal(t, tree, "nested_p07"); got != "value-07" {
		t.Errorf("field nested_p07 = %q", got)
	}
	if n := rec.count("ssm.GetParametersByPath"); n != 2 {
		t.Errorf("13 parameters took %d GetParametersByPath pages, want 2", n)
	}
	seed.param(t, base+"/app/nested/p03", "changed", ssmtypes.ParameterTypeSecureString, true)
	tree2, err := p.Fetch(ctx, testenv.Ref(t, "aws-ssm://"+base+"/app/?recursive=true"))
	if err != nil || tree2.Version == tree.Version || testenv.Reveal(t, tree2, "nested_p03") != "changed" {
		t.Errorf("recursive after overwrite: %v version %q (was %q)", err, tree2.Version, tree.Version)
	}

	// Batches: 12 names → 2 GetParameters calls; a missing one is ErrNotFound.
	rec.reset()
	var refs []sources.Ref
	for i := range 11 {
		refs = append(refs, testenv.Ref(t, fmt.Sprintf("aws-ssm://%s/app/nested/p%02d", base, i)))
	}
	refs = append(refs, testenv.Ref(t, "aws-ssm://"+base+"/missing"))
	res := p.(sources.Batcher).FetchBatch(ctx, refs)
	for i := range 11 {
		want := fmt.Sprintf("value-%02d", i)
		if i == 3 {
			want = "changed"
		}
		if res[i].Err != nil || string(res[i].Object.Value.Reveal()) != want {
			t.Errorf("batch[%d]: %v %q, want %q", i, res[i].Err, res[i].Object.Value.Reveal(), want)
		}
	}
	if !errors.Is(res[11].Err, sources.ErrNotFound) || !strings.Contains(res[11].Err.Error(), "/missing") {
		t.Errorf("batch missing: %v", res[11].Err)
	}
	if n := rec.count("ssm.GetParameters"); n != 2 || rec.count("ssm.GetParameter") != 0 {
		t.Errorf("12 names took %d GetParameters and %d GetParameter calls, want 2 and 0", n, rec.count("ssm.GetParameter"))
	}

	_, err = p.Fetch(ctx, testenv.Ref(t, "aws-ssm://"+base+"/missing"))
	if !errors.Is(err, sources.ErrNotFound) {
		t.Errorf("missing: %v, want ErrNotFound", err)
	}
	if got := rec.signers("ssm"); fmt.Sprint(got) != "[AKIAPHASENODE0000001]" {
		t.Errorf("SSM signed by %v, want the instance role's key only (environment keys ignored)", got)
	}
	md.AssertNoIMDSv1(t)
}

// TestIntegrationIMDSDiagnosis covers the failures that must each be worded
// on their own, against real listeners.
func TestIntegrationIMDSDiagnosis(t *testing.T) {
	t.Parallel()

	// A listener that accepts and never answers: the token PUT of a
	// container behind hop limit 1.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	// A port nobody listens on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + closed.Addr().String()
	closed.Close()

	noRole := servers.MetadataMock(t, t.TempDir(), nil)
	expired := servers.MetadataMock(t, t.TempDir(), &servers.Credentials{
		Region: testRegion, Role: "phase-node", AccessKeyID: "AKIAEXPIRED000000001", SecretAccessKey: "x", Token: "y",
		Expiration: time.Now().Add(-time.Hour),
	})

	tests := []struct {
		name     string
		endpoint string
		problem  IMDSProblem
		sentinel error
		want     []string
	}{
		{"hop limit", "http://" + silent.Addr().String(), IMDSTokenTimeout, sources.ErrUnavailable,
			[]string{"token request", "got no answer", "hop limit", "--http-put-response-hop-limit 2 --http-endpoint enabled"}},
		{"connection refused", refusedURL, IMDSRefused, sources.ErrUnavailable,
			[]string{"refused", "not an EC2 instance", "credentials: default"}},
		{"no role attached", noRole.URL, IMDSNoRole, sources.ErrAuth,
			[]string{"no IAM role is attached", "404"}},
		{"expired credentials", expired.URL, IMDSExpiredCredentials, sources.ErrAuth,
			[]string{"already expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src, err := New(testCtx(t), Config{Region: testRegion}, Options{
				Env: envMap("AWS_EC2_METADATA_SERVICE_ENDPOINT", tt.endpoint, "AWS_ENDPOINT_URL", refusedURL),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = src.Check(ctx)
			var ie *IMDSError
			if !errors.As(err, &ie) || ie.Problem != tt.problem {
				t.Fatalf("Check: %v; want IMDS problem %d", err, tt.problem)
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("error does not wrap %v: %v", tt.sentinel, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			// A fetch reports the same diagnosis.
			_, err = src.SecretsManager().Fetch(ctx, testenv.Ref(t, "aws-sm://x"))
			if !errors.As(err, &ie) || ie.Problem != tt.problem {
				t.Errorf("Fetch: %v; want IMDS problem %d", err, tt.problem)
			}
		})
	}
	t.Cleanup(func() {
		noRole.AssertNoIMDSv1(t)
		expired.AssertNoIMDSv1(t)
	})
}

// clearAWSEnv empties the AWS variables of the process environment for the
// test (the SDK's default chain reads nothing else), with the shared files
// in dir: the machine running the tests must not leak into them.
func clearAWSEnv(t *testing.T, dir string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
}

// TestIntegrationDefaultChain: credentials: default is the SDK's chain,
// step by step, against moto (STS, SSM) and the metadata mock: environment
// keys, web identity from the environment and from a profile, static
// profile keys, a profile role chain (source_profile), credential_process,
// and the instance role over IMDSv2 (also for the region). Each step's
// principal signs the SSM read.
func TestIntegrationDefaultChain(t *testing.T) {
	moto, md := sharedMoto(t), sharedMetadataMock(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	// moto does not verify the token's signature.
	if err := os.WriteFile(tokenFile, []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwaGFzZSJ9.c2ln"), 0o600); err != nil {
		t.Fatal(err)
	}
	process := filepath.Join(dir, "credential-process")
	if err := os.WriteFile(process, []byte("#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIAPROCESS000000001\", \"SecretAccessKey\": \"process-secret\"}'\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Keys outside moto's STS map to its default account; assumed roles to
	// the role's.
	defaultParam := uniq(t, "/chain-default-")
	newSeeder(t, moto, credentials.NewStaticCredentialsProvider("AKIAPHASENODE0000001", "node-secret-key", "")).
		param(t, defaultParam, "from-default-account", ssmtypes.ParameterTypeSecureString, false)
	roleParam := uniq(t, "/chain-role-")
	roleSeeder(t, moto).param(t, roleParam, "from-role", ssmtypes.ParameterTypeSecureString, false)

	tests := []struct {
		name       string
		env        []string
		config     string // the shared config file
		param      string
		want       string
		signer     string // the access key that signs the SSM read ("" : an assumed role's, not the base's)
		stsOp      string // the STS call the chain makes, "" for none
		imdsRegion bool
	}{
		{name: "environment keys", env: []string{"AWS_ACCESS_KEY_ID", "AKIADEFAULTCHAIN0001", "AWS_SECRET_ACCESS_KEY", "chain-secret"},
			param: defaultParam, want: "from-default-account", signer: "AKIADEFAULTCHAIN0001"},
		{name: "web identity from the environment", env: []string{"AWS_WEB_IDENTITY_TOKEN_FILE", tokenFile, "AWS_ROLE_ARN", roleARN, "AWS_ROLE_SESSION_NAME", "phase-web"},
			param: roleParam, want: "from-role", stsOp: "sts.AssumeRoleWithWebIdentity"},
		{name: "web identity, region from IMDS placement", env: []string{"AWS_WEB_IDENTITY_TOKEN_FILE", tokenFile, "AWS_ROLE_ARN", roleARN, "AWS_ROLE_SESSION_NAME", "phase-web"},
			param: roleParam, want: "from-role", stsOp: "sts.AssumeRoleWithWebIdentity", imdsRegion: true},
		{name: "web identity in a profile", env: []string{"AWS_PROFILE", "wi"},
			config: "[profile wi]\nrole_arn = " + roleARN + "\nweb_identity_token_file = " + tokenFile + "\nrole_session_name = phase-web\n",
			param:  roleParam, want: "from-role", stsOp: "sts.AssumeRoleWithWebIdentity"},
		{name: "profile keys", env: []string{"AWS_PROFILE", "static"},
			config: "[profile static]\naws_access_key_id = AKIAPROFILE000000001\naws_secret_access_key = profile-secret\n",
			param:  defaultParam, want: "from-default-account", signer: "AKIAPROFILE000000001"},
		{name: "profile role chain", env: []string{"AWS_PROFILE", "chained"},
			config: "[profile base]\naws_access_key_id = AKIABASE000000000001\naws_secret_access_key = base-secret\n" +
				"[profile chained]\nrole_arn = " + roleARN + "\nsource_profile = base\nrole_session_name = phase-web\n",
			param: roleParam, want: "from-role", stsOp: "sts.AssumeRole"},
		{name: "credential_process", env: []string{"AWS_PROFILE", "process"},
			config: "[profile process]\ncredential_process = " + process + "\n",
			param:  defaultParam, want: "from-default-account", signer: "AKIAPROCESS000000001"},
		{name: "instance role", param: defaultParam, want: "from-default-account", signer: "AKIAPHASENODE0000001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := t.TempDir()
			clearAWSEnv(t, sub)
			if err := os.WriteFile(filepath.Join(sub, "config"), []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_ENDPOINT_URL", moto)
			// The SDK's chain resolves AWS_ENDPOINT_URL after the
			// credentials, so its STS calls take only the STS variable.
			t.Setenv("AWS_ENDPOINT_URL_STS", moto)
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", md.URL)
			for i := 0; i+1 < len(tt.env); i += 2 {
				t.Setenv(tt.env[i], tt.env[i+1])
			}
			cfg := Config{Region: testRegion, Credentials: CredentialsDefault}
			if tt.imdsRegion {
				cfg.Region = ""
			}
			rec := newRecorder()
			src, err := New(testCtx(t), cfg, Options{HTTPClient: rec})
			if err != nil {
				t.Fatal(err)
			}
			if err := src.Check(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			o, err := src.SSM().Fetch(testCtx(t), testenv.Ref(t, "aws-ssm://"+tt.param))
			if err != nil || string(o.Value.Reveal()) != tt.want {
				t.Fatalf("%v %q, want %q", err, o.Value.Reveal(), tt.want)
			}
			if src.Region() != testRegion {
				t.Errorf("region %q", src.Region())
			}
			signers := rec.signers("ssm")
			if tt.signer != "" && fmt.Sprint(signers) != "["+tt.signer+"]" {
				t.Errorf("SSM signed by %v, want %s", signers, tt.signer)
			}
			if tt.stsOp != "" {
				if rec.count(tt.stsOp) != 1 {
					t.Errorf("%d %s calls, want 1", rec.count(tt.stsOp), tt.stsOp)
				}
				if !strings.Contains(strings.Join(rec.stsBodies(), "\n"), "RoleSessionName=phase-web") {
					t.Errorf("STS request lacks the session name: %v", rec.stsBodies())
				}
				if len(signers) != 1 || strings.HasPrefix(signers[0], "AKIABASE") {
					t.Errorf("SSM signed by %v, want the assumed role's key", signers)
				}
			}
		})
	}
	t.Cleanup(func() { md.AssertNoIMDSv1(t) })
}

// TestDefaultChainSupportsSSO: an IAM Identity Center profile is the SDK's
// to resolve, not refused; without a cached SSO login the credentials fail
// with the SDK's word for it, as an authentication failure.
func TestDefaultChainSupportsSSO(t *testing.T) {
	dir := t.TempDir()
	clearAWSEnv(t, dir)
	t.Setenv("HOME", dir) // the SSO token cache: ~/.aws/sso/cache
	t.Setenv("AWS_PROFILE", "sso")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	profile := "[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Reader\nregion = eu-west-1\n" +
		"[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n"
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := New(context.Background(), Config{Credentials: CredentialsDefault}, Options{})
	if err != nil {
		t.Fatalf("an SSO profile is refused: %v", err)
	}
	if src.Region() != "eu-west-1" {
		t.Errorf("region %q, want the profile's", src.Region())
	}
	err = src.Check(context.Background())
	if !errors.Is(err, sources.ErrAuth) || !strings.Contains(err.Error(), "SSO") {
		t.Errorf("Check without a login: %v, want an ErrAuth naming SSO", err)
	}
}

// TestDefaultModeMissingProfile: a profile named by AWS_PROFILE that the
// shared files lack is refused at start-up, with the SDK's word for it.
func TestDefaultModeMissingProfile(t *testing.T) {
	dir := t.TempDir()
	clearAWSEnv(t, dir)
	t.Setenv("AWS_PROFILE", "nope")
	_, err := New(context.Background(), Config{Credentials: CredentialsDefault}, Options{})
	if err == nil || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), "credentials: default") {
		t.Errorf("%v, want a start-up error naming the profile", err)
	}
}
