package awsjson

import "context"

// The services.
var (
	SecretsManagerService = Service{ID: "Secrets Manager", Signing: "secretsmanager", Target: "secretsmanager", Host: "secretsmanager", rule: secretsManagerRule}
	SSMService            = Service{ID: "SSM", Signing: "ssm", Target: "AmazonSSM", Host: "ssm", rule: ssmRule}
)

// The request and response shapes, with the API's JSON member names and
// only the members the source uses; members are declared in the order the
// SDK's serializers write them, so that the signed bytes are the same.
type (
	GetSecretValueInput struct {
		SecretId     string
		VersionId    string `json:",omitempty"`
		VersionStage string `json:",omitempty"`
	}
	GetSecretValueOutput struct {
		ARN          string
		Name         string
		SecretString *SecretText
		SecretBinary []byte // base64 in JSON
		VersionId    string
	}
	BatchGetSecretValueInput struct {
		NextToken    string `json:",omitempty"`
		SecretIdList []string
	}
	BatchGetSecretValueOutput struct {
		SecretValues []SecretValueEntry
		Errors       []APIErrorType
		NextToken    string
	}
	SecretValueEntry struct {
		ARN          string
		Name         string
		SecretString *SecretText
		SecretBinary []byte
		VersionId    string
	}
	// APIErrorType is one secret's failure in a batch.
	APIErrorType struct {
		SecretId  string
		ErrorCode string
		Message   string
	}

	GetParameterInput struct {
		Name           string
		WithDecryption bool
	}
	GetParameterOutput struct {
		Parameter *Parameter
	}
	GetParametersInput struct {
		Names          []string
		WithDecryption bool
	}
	GetParametersOutput struct {
		Parameters        []Parameter
		InvalidParameters []string
	}
	GetParametersByPathInput struct {
		MaxResults     int32  `json:",omitempty"`
		NextToken      string `json:",omitempty"`
		Path           string
		Recursive      bool
		WithDecryption bool
	}
	GetParametersByPathOutput struct {
		Parameters []Parameter
		NextToken  string
	}
	Parameter struct {
		Name     string
		Selector string
		Value    SecretText
		Version  int64
	}
)

// Wipe clears the secret bytes of the answer.
func (o *GetSecretValueOutput) Wipe() {
	o.SecretString.Wipe()
	clear(o.SecretBinary)
}

// Wipe clears the secret bytes of the answer.
func (o *BatchGetSecretValueOutput) Wipe() {
	for i := range o.SecretValues {
		o.SecretValues[i].SecretString.Wipe()
		clear(o.SecretValues[i].SecretBinary)
	}
}

// Wipe clears the secret bytes of the answer.
func (o *GetParameterOutput) Wipe() {
	if o.Parameter != nil {
		o.Parameter.Value.Wipe()
	}
}

// Wipe clears the secret bytes of the answer.
func (o *GetParametersOutput) Wipe() { wipeParameters(o.Parameters) }

// Wipe clears the secret bytes of the answer.
func (o *GetParametersByPathOutput) Wipe() { wipeParameters(o.Parameters) }

func wipeParameters(ps []Parameter) {
	for i := range ps {
		ps[i].Value.Wipe()
	}
}

// SecretsManager is the Secrets Manager client.
type SecretsManager struct{ *Client }

// NewSecretsManager returns a Secrets Manager client.
func NewSecretsManager(cfg Config) SecretsManager {
	return SecretsManager{New(SecretsManagerService, cfg)}
}

func (c SecretsManager) GetSecretValue(ctx context.Context, in *GetSecretValueInput) (*GetSecretValueOutput, error) {
	out := &GetSecretValueOutput{}
	return out, c.Call(ctx, "GetSecretValue", in, out)
}

func (c SecretsManager) BatchGetSecretValue(ctx context.Context, in *BatchGetSecretValueInput) (*BatchGetSecretValueOutput, error) {
	out := &BatchGetSecretValueOutput{}
	return out, c.Call(ctx, "BatchGetSecretValue", in, out)
}

// SSM is the SSM client.
type SSM struct{ *Client }

// NewSSM returns an SSM client.
func NewSSM(cfg Config) SSM { return SSM{New(SSMService, cfg)} }

func (c SSM) GetParameter(ctx context.Context, in *GetParameterInput) (*GetParameterOutput, error) {
	out := &GetParameterOutput{}
	return out, c.Call(ctx, "GetParameter", in, out)
}

func (c SSM) GetParameters(ctx context.Context, in *GetParametersInput) (*GetParametersOutput, error) {
	out := &GetParametersOutput{}
	return out, c.Call(ctx, "GetParameters", in, out)
}

func (c SSM) GetParametersByPath(ctx context.Context, in *GetParametersByPathInput) (*GetParametersByPathOutput, error) {
	out := &GetParametersByPathOutput{}
	return out, c.Call(ctx, "GetParametersByPath", in, out)
}
