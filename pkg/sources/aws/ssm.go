package aws

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/smithy-go"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws/internal/awsjson"
)

// ssmAPI is the part of the SSM API the source calls.
type ssmAPI interface {
	GetParameter(ctx context.Context, in *awsjson.GetParameterInput) (*awsjson.GetParameterOutput, error)
	GetParameters(ctx context.Context, in *awsjson.GetParametersInput) (*awsjson.GetParametersOutput, error)
	GetParametersByPath(ctx context.Context, in *awsjson.GetParametersByPathInput) (*awsjson.GetParametersByPathOutput, error)
}

var _ ssmAPI = awsjson.SSM{}

const (
	ssmBatchMax = 10 // GetParameters' limit on Names
	ssmPageMax  = 10 // GetParametersByPath's limit on MaxResults
)

// parameterStore reads aws-ssm:// refs. SecureStrings are always decrypted;
// a StringList is the raw comma-separated value.
type parameterStore struct {
	s    *Source
	gate throttleGate
}

var (
	_ sources.Source  = (*parameterStore)(nil)
	_ sources.Batcher = (*parameterStore)(nil)
)

func (p *parameterStore) client(ctx context.Context) (ssmAPI, error) {
	if _, err := p.s.credentials(ctx, sources.AWSSSM); err != nil {
		return nil, err
	}
	if err := p.gate.wait(ctx, sources.AWSSSM); err != nil {
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
	out, err := api.GetParameter(ctx, &awsjson.GetParameterInput{Name: name, WithDecryption: true})
	if err != nil {
		return sources.Object{}, p.observe(p.s.classify(what, "ssm:GetParameter", err, nil))
	}
	p.observe(nil)
	if out.Parameter == nil {
		return sources.Object{}, fmt.Errorf("%s: empty answer: %w", what, sources.ErrNotFound)
	}
	return paramObject(out.Parameter), nil
}

// observe passes err (nil for an answer) to the throttling gate.
func (p *parameterStore) observe(err error) error {
	if d := p.gate.observe(err, time.Now()); d > 0 {
		p.s.log.Debug("throttled by AWS; holding SSM reads back", "source", sources.AWSSSM, "backoff", d.String())
	}
	return err
}

// paramObject moves the decoded value into a secret.Value and clears the
// decoded bytes.
func paramObject(p *awsjson.Parameter) sources.Object {
	o := sources.Object{Value: secret.New(p.Value), Version: sources.Version(p.Version)}
	p.Value.Wipe()
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
		out, err := api.GetParametersByPath(ctx, &awsjson.GetParametersByPathInput{
			Path:           apiPath,
			Recursive:      true,
			WithDecryption: true,
			MaxResults:     ssmPageMax,
			NextToken:      next,
		})
		if err != nil {
			return sources.Object{}, p.observe(p.s.classify(what, "ssm:GetParametersByPath", err, nil))
		}
		p.observe(nil)
		for i := range out.Parameters {
			prm := &out.Parameters[i]
			field := FieldName(path, prm.Name)
			if other, dup := names[field]; dup {
				out.Wipe()
				return sources.Object{}, fmt.Errorf("%s: parameters %q and %q both map to field %q; rename one", what, other, prm.Name, field)
			}
			names[field] = prm.Name
			fields[field] = secret.New(prm.Value)
			prm.Value.Wipe()
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
	out, err := api.GetParameters(ctx, &awsjson.GetParametersInput{Names: names, WithDecryption: true})
	if err != nil {
		return nil, p.observe(p.s.classify(what, "ssm:GetParameters", err, nil))
	}
	p.observe(nil)
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
