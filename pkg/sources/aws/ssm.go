package aws

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
)

// ssmAPI is the part of the SSM API the source calls.
type ssmAPI interface {
	GetParameter(ctx context.Context, in *getParameterInput) (*getParameterOutput, error)
	GetParameters(ctx context.Context, in *getParametersInput) (*getParametersOutput, error)
	GetParametersByPath(ctx context.Context, in *getParametersByPathInput) (*getParametersByPathOutput, error)
}

// The request and response shapes, with the API's JSON field names; only
// the fields the source uses.
type (
	getParameterInput struct {
		Name           string
		WithDecryption bool
	}
	getParameterOutput struct {
		Parameter *parameter
	}
	getParametersInput struct {
		Names          []string
		WithDecryption bool
	}
	getParametersOutput struct {
		Parameters        []parameter
		InvalidParameters []string
	}
	getParametersByPathInput struct {
		Path           string
		Recursive      bool
		WithDecryption bool
		MaxResults     int32  `json:",omitempty"`
		NextToken      string `json:",omitempty"`
	}
	getParametersByPathOutput struct {
		Parameters []parameter
		NextToken  string
	}
	parameter struct {
		Name     string
		Selector string
		Value    secretText
		Version  int64
	}
)

func (o *getParameterOutput) wipe() {
	if o.Parameter != nil {
		o.Parameter.Value.wipe()
	}
}

func (o *getParametersOutput) wipe()       { wipeParameters(o.Parameters) }
func (o *getParametersByPathOutput) wipe() { wipeParameters(o.Parameters) }

func wipeParameters(ps []parameter) {
	for i := range ps {
		ps[i].Value.wipe()
	}
}

// ssmClient is ssmAPI over the JSON protocol.
type ssmClient struct{ c *jsonClient }

func (c ssmClient) GetParameter(ctx context.Context, in *getParameterInput) (*getParameterOutput, error) {
	out := &getParameterOutput{}
	return out, c.c.call(ctx, "GetParameter", in, out)
}

func (c ssmClient) GetParameters(ctx context.Context, in *getParametersInput) (*getParametersOutput, error) {
	out := &getParametersOutput{}
	return out, c.c.call(ctx, "GetParameters", in, out)
}

func (c ssmClient) GetParametersByPath(ctx context.Context, in *getParametersByPathInput) (*getParametersByPathOutput, error) {
	out := &getParametersByPathOutput{}
	return out, c.c.call(ctx, "GetParametersByPath", in, out)
}

const (
	ssmBatchMax = 10 // GetParameters' limit on Names
	ssmPageMax  = 10 // GetParametersByPath's limit on MaxResults
)

// parameterStore reads aws-ssm:// refs. SecureStrings are always decrypted;
// a StringList is the raw comma-separated value.
type parameterStore struct {
	s *Source
}

var (
	_ sources.Source  = (*parameterStore)(nil)
	_ sources.Batcher = (*parameterStore)(nil)
)

func (p *parameterStore) client(ctx context.Context) (ssmAPI, error) {
	if _, err := p.s.credentials(ctx, sources.AWSSSM); err != nil {
		return nil, err
	}
	if err := p.s.wait(ctx); err != nil {
		return nil, err
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	return p.s.ssm, nil
}

// selector is the name with its ":version" or ":label" suffix, as
// GetParameter and GetParameters take it.
func selector(ref sources.Ref) string {
	switch {
	case ref.Param("version") != "":
		return ref.Path + ":" + ref.Param("version")
	case ref.Param("label") != "":
		return ref.Path + ":" + ref.Param("label")
	}
	return ref.Path
}

func recursive(ref sources.Ref) bool { return ref.Param("recursive") == "true" }

// Fetch reads one parameter, or every parameter under a path with
// ?recursive=true.
func (p *parameterStore) Fetch(ctx context.Context, ref sources.Ref) (sources.Object, error) {
	if recursive(ref) {
		return p.byPath(ctx, ref.Path)
	}
	name := selector(ref)
	what := fmt.Sprintf("aws-ssm: get parameter %q", name)
	api, err := p.client(ctx)
	if err != nil {
		return sources.Object{}, fmt.Errorf("%s: %w", what, err)
	}
	out, err := api.GetParameter(ctx, &getParameterInput{Name: name, WithDecryption: true})
	if err != nil {
		err = p.s.classify(what, "ssm:GetParameter", err, nil)
		p.s.observe(sources.AWSSSM, err)
		return sources.Object{}, err
	}
	p.s.observe(sources.AWSSSM, nil)
	if out.Parameter == nil {
		return sources.Object{}, fmt.Errorf("%s: empty answer: %w", what, sources.ErrNotFound)
	}
	return paramObject(out.Parameter), nil
}

// paramObject moves the decoded value into a secret.Value and clears the
// decoded bytes.
func paramObject(p *parameter) sources.Object {
	o := sources.Object{Value: secret.New(p.Value), Version: sources.Version(p.Version)}
	p.Value.wipe()
	return o
}

// FieldName maps a parameter under path to its field: the name relative to
// the path with "/" replaced by "_". Under /phase/, /phase/db/password
// becomes db_password (file <secret>_db_password, env <SECRET>_DB_PASSWORD_FILE).
func FieldName(path, name string) string {
	prefix := path
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return strings.ReplaceAll(strings.TrimPrefix(name, prefix), "/", "_")
}

// byPath reads every parameter under path (recursively, all pages) into
// Fields; Version is a hash of the names and their versions, so adding,
// removing or overwriting any one changes it.
func (p *parameterStore) byPath(ctx context.Context, path string) (sources.Object, error) {
	what := fmt.Sprintf("aws-ssm: get parameters by path %q", path)
	apiPath := path
	if apiPath != "/" {
		apiPath = strings.TrimSuffix(apiPath, "/")
	}
	fields := map[string]secret.Value{}
	names := map[string]string{} // field → parameter name, to report collisions
	var versions []string
	var next string
	for {
		api, err := p.client(ctx)
		if err != nil {
			return sources.Object{}, fmt.Errorf("%s: %w", what, err)
		}
		out, err := api.GetParametersByPath(ctx, &getParametersByPathInput{
			Path:           apiPath,
			Recursive:      true,
			WithDecryption: true,
			MaxResults:     ssmPageMax,
			NextToken:      next,
		})
		if err != nil {
			err = p.s.classify(what, "ssm:GetParametersByPath", err, nil)
			p.s.observe(sources.AWSSSM, err)
			return sources.Object{}, err
		}
		p.s.observe(sources.AWSSSM, nil)
		for i := range out.Parameters {
			prm := &out.Parameters[i]
			field := FieldName(path, prm.Name)
			if other, dup := names[field]; dup {
				out.wipe()
				return sources.Object{}, fmt.Errorf("%s: parameters %q and %q both map to field %q; rename one", what, other, prm.Name, field)
			}
			names[field] = prm.Name
			fields[field] = secret.New(prm.Value)
			prm.Value.wipe()
			versions = append(versions, fmt.Sprintf("%s\x00%d", prm.Name, prm.Version))
		}
		if next = out.NextToken; next == "" {
			break
		}
	}
	if len(fields) == 0 {
		return sources.Object{}, fmt.Errorf("%s: no parameters under the path: %w", what, sources.ErrNotFound)
	}
	sort.Strings(versions)
	return sources.Object{
		Fields:  fields,
		Version: sources.ShortHash(sha256.Sum256([]byte(strings.Join(versions, "\n")))),
	}, nil
}

// FetchBatch reads single parameters with GetParameters, up to 10 names per
// call; recursive paths and anything the batch did not answer are read one
// by one.
func (p *parameterStore) FetchBatch(ctx context.Context, refs []sources.Ref) []sources.Result {
	results := make([]sources.Result, len(refs))
	done := make([]bool, len(refs))
	var names []string
	pos := map[string][]int{}
	for i, ref := range refs {
		if recursive(ref) {
			continue
		}
		n := selector(ref)
		if _, seen := pos[n]; !seen {
			names = append(names, n)
		}
		pos[n] = append(pos[n], i)
	}
	for start := 0; start < len(names); start += ssmBatchMax {
		chunk := names[start:min(start+ssmBatchMax, len(names))]
		got, err := p.batch(ctx, chunk)
		for _, n := range chunk {
			r, ok := got[n]
			if err != nil {
				r, ok = sources.Result{Err: err}, true
			}
			if ok {
				for _, i := range pos[n] {
					results[i], done[i] = r, true
				}
			}
		}
	}
	for i, ref := range refs {
		if !done[i] {
			o, err := p.Fetch(ctx, ref)
			results[i] = sources.Result{Object: o, Err: err}
		}
	}
	return results
}

func (p *parameterStore) batch(ctx context.Context, names []string) (map[string]sources.Result, error) {
	what := fmt.Sprintf("aws-ssm: get %d parameters", len(names))
	api, err := p.client(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := api.GetParameters(ctx, &getParametersInput{Names: names, WithDecryption: true})
	if err != nil {
		err = p.s.classify(what, "ssm:GetParameters", err, nil)
		p.s.observe(sources.AWSSSM, err)
		return nil, err
	}
	p.s.observe(sources.AWSSSM, nil)
	got := make(map[string]sources.Result, len(names))
	for i := range out.Parameters {
		prm := &out.Parameters[i]
		// A selector comes back as Name plus Selector (":3", ":label").
		got[prm.Name+prm.Selector] = sources.Result{Object: paramObject(prm)}
	}
	for _, n := range out.InvalidParameters {
		err := &smithy.GenericAPIError{Code: "ParameterNotFound", Message: "the parameter, version or label does not exist"}
		got[n] = sources.Result{Err: p.s.classify(fmt.Sprintf("aws-ssm: get parameter %q", n), "ssm:GetParameters", err, nil)}
	}
	return got, nil
}
