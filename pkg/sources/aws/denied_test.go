package aws

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// deniedSetup runs in moto's Python before IAM enforcement starts: exactly
// setupActions unauthenticated requests, then moto checks every signature
// and policy.
const deniedSetup = `
import json, sys, boto3
url = sys.argv[1]
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIAADMIN00000000001", aws_secret_access_key="admin")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="phase-node")
key = iam.create_access_key(UserName="phase-node")["AccessKey"]
iam.put_user_policy(UserName="phase-node", PolicyName="ssm-only", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParameters"], "Resource": "*"}]}))
boto3.client("secretsmanager", **kw).create_secret(Name="prod/phase/denied", SecretString="never-read")
print(json.dumps({"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
`

const setupActions = 4

// TestIntegrationAccessDenied runs moto with IAM enforcement on: the
// instance role may read SSM only, so Secrets Manager answers
// AccessDeniedException, one by one and in batches.
func TestIntegrationAccessDenied(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	moto := servers.Moto(t, dir, "INITIAL_NO_AUTH_ACTION_COUNT="+strconv.Itoa(setupActions))
	py := testenv.Tool(t, "PHASE_TEST_MOTO_PYTHON", "")
	out, err := exec.Command(py, "-c", deniedSetup, moto).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("setup: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var key struct{ ID, Secret string }
	if err := json.Unmarshal(out, &key); err != nil {
		t.Fatalf("setup output %q: %v", out, err)
	}
	md := servers.MetadataMock(t, dir, &servers.Credentials{
		Region: testRegion, Role: "phase-node", AccessKeyID: key.ID, SecretAccessKey: key.Secret, Expiration: time.Now().Add(6 * time.Hour),
	})

	src := newIntegrationSource(t, md, moto, Config{Region: testRegion}, nil, nil)
	ctx := testCtx(t)
	ref := testenv.Ref(t, "aws-sm://prod/phase/denied#password")
	_, err = src.SecretsManager().Fetch(ctx, ref)
	if !errors.Is(err, sources.ErrPermission) {
		t.Fatalf("Fetch: %v, want ErrPermission", err)
	}
	for _, want := range []string{`"prod/phase/denied"`, "access denied", "secretsmanager:GetSecretValue", "instance role"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("AccessDenied reads: %v", err)

	res := src.SecretsManager().(sources.Batcher).FetchBatch(ctx, []sources.Ref{ref})
	if !errors.Is(res[0].Err, sources.ErrPermission) || !strings.Contains(res[0].Err.Error(), `"prod/phase/denied"`) {
		t.Errorf("FetchBatch: %v, want ErrPermission naming the secret", res[0].Err)
	}

	// The role may read SSM: a missing parameter is not found, not denied.
	_, err = src.SSM().Fetch(ctx, testenv.Ref(t, "aws-ssm:///phase/none"))
	if !errors.Is(err, sources.ErrNotFound) {
		t.Errorf("SSM: %v, want ErrNotFound", err)
	}
	md.AssertNoIMDSv1(t)
}
