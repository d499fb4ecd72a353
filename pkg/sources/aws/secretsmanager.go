package aws

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/smithy-go"

	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources/aws/internal/awsjson"
)

// smAPI is the part of the Secrets Manager API the source calls.
type smAPI interface {
	GetSecretValue(ctx context.Context, in *awsjson.GetSecretValueInput) (*awsjson.GetSecretValueOutput, error)
	BatchGetSecretValue(ctx context.Context, in *awsjson.BatchGetSecretValueInput) (*awsjson.BatchGetSecretValueOutput, error)
}

var _ smAPI = awsjson.SecretsManager{}

// smBatchMax is BatchGetSecretValue's limit on SecretIdList.
const smBatchMax = 20

const stageCurrent = "AWSCURRENT"

// secretsManager reads aws-sm:// refs. One GetSecretValue per secret, and
// BatchGetSecretValue for secrets due together. A DescribeSecret first to
// skip unchanged values would cost a second API call per unchanged secret
// at the same price and save nothing: GetSecretValue's answer already
// carries the VersionId that change detection compares.
type secretsManager struct {
	s *Source
	// noBatch is set when the role may not call BatchGetSecretValue; batches
	// then fall back to GetSecretValue per secret.
	noBatch atomic.Bool
	gate    throttleGate
}

var (
	_ sources.Source  = (*secretsManager)(nil)
	_ sources.Batcher = (*secretsManager)(nil)
)

func (m *secretsManager) client(ctx context.Context) (smAPI, error) {
	if _, err := m.s.credentials(ctx, sources.AWSSM); err != nil {
		return nil, err
	}
	if err := m.gate.wait(ctx, sources.AWSSM); err != nil {
		return nil, err
	}
	if err := m.s.wait(ctx); err != nil {
		return nil, err
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	return m.s.sm, nil
}

// Fetch reads one secret: AWSCURRENT (sent explicitly), ?stage= or
// ?version_id=.
func (m *secretsManager) Fetch(ctx context.Context, ref sources.Ref) (sources.Object, error) {
	what := fmt.Sprintf("aws-sm: get secret %q", ref.Path)
	in := &awsjson.GetSecretValueInput{SecretId: ref.Path}
	if id := ref.Param("version_id"); id != "" {
		in.VersionId = id
		what += fmt.Sprintf(" version_id %q", id)
	} else {
		stage := ref.Param("stage")
		if stage == "" {
			stage = stageCurrent
		}
		in.VersionStage = stage
		if stage != stageCurrent {
			what += fmt.Sprintf(" stage %q", stage)
		}
	}
	api, err := m.client(ctx)
	if err != nil {
		return sources.Object{}, fmt.Errorf("%s: %w", what, err)
	}
	out, err := api.GetSecretValue(ctx, in)
	if err != nil {
		return sources.Object{}, m.observe(m.s.classify(what, "secretsmanager:GetSecretValue", err, nil))
	}
	m.observe(nil)
	return smObject(what, out.SecretString, out.SecretBinary, out.VersionId)
}

// observe passes err (nil for an answer) to the throttling gate.
func (m *secretsManager) observe(err error) error {
	if d := m.gate.observe(err, time.Now()); d > 0 {
		m.s.log.Debug("throttled by AWS; holding Secrets Manager reads back", "source", sources.AWSSM, "backoff", d.String())
	}
	return err
}

// smObject moves the decoded value into a secret.Value and clears the
// decoded bytes.
func smObject(what string, str *awsjson.SecretText, bin []byte, versionID string) (sources.Object, error) {
	o := sources.Object{Version: versionID}
	switch {
	case str != nil:
		o.Value = secret.New(*str)
		str.Wipe()
	case bin != nil:
		o.Value = secret.New(bin)
		clear(bin)
	default:
		return sources.Object{}, fmt.Errorf("%s: the version has neither SecretString nor SecretBinary: %w", what, sources.ErrNotFound)
	}
	return o, nil
}

// batchable reports whether ref reads AWSCURRENT, the only stage
// BatchGetSecretValue returns.
func batchable(ref sources.Ref) bool {
	return ref.Param("version_id") == "" && (ref.Param("stage") == "" || ref.Param("stage") == stageCurrent)
}

// FetchBatch reads refs with BatchGetSecretValue, up to 20 per call; refs
// for other stages or versions, and any the batch did not answer, are read
// one by one.
func (m *secretsManager) FetchBatch(ctx context.Context, refs []sources.Ref) []sources.Result {
	results := make([]sources.Result, len(refs))
	var ids []string
	pos := map[string][]int{} // secret id → indexes into refs
	for i, ref := range refs {
		if !batchable(ref) || m.noBatch.Load() {
			continue
		}
		if _, seen := pos[ref.Path]; !seen {
			ids = append(ids, ref.Path)
		}
		pos[ref.Path] = append(pos[ref.Path], i)
	}
	done := make([]bool, len(refs))
	for start := 0; start < len(ids); start += smBatchMax {
		chunk := ids[start:min(start+smBatchMax, len(ids))]
		got, err := m.batch(ctx, chunk)
		if err != nil {
			if errors.Is(err, sources.ErrPermission) && m.noBatch.CompareAndSwap(false, true) {
				m.s.log.Warn("aws-sm: BatchGetSecretValue denied; reading secrets one by one (grant secretsmanager:BatchGetSecretValue to save API calls)", "err", err)
			}
			if errors.Is(err, sources.ErrPermission) {
				continue // the per-secret reads below say which secret is denied
			}
			for _, id := range chunk {
				for _, i := range pos[id] {
					results[i], done[i] = sources.Result{Err: fmt.Errorf("aws-sm: get secret %q: %w", id, err)}, true
				}
			}
			continue
		}
		for _, id := range chunk {
			if r, ok := got[id]; ok {
				for _, i := range pos[id] {
					results[i], done[i] = r, true
				}
			}
		}
	}
	for i, ref := range refs {
		if !done[i] {
			o, err := m.Fetch(ctx, ref)
			results[i] = sources.Result{Object: o, Err: err}
		}
	}
	return results
}

// batch calls BatchGetSecretValue for ids (following NextToken) and returns
// the result for every id it answered, by the id as requested.
func (m *secretsManager) batch(ctx context.Context, ids []string) (map[string]sources.Result, error) {
	what := fmt.Sprintf("aws-sm: batch get %d secrets", len(ids))
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	got := make(map[string]sources.Result, len(ids))
	var next string
	for {
		api, err := m.client(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out, err := api.BatchGetSecretValue(ctx, &awsjson.BatchGetSecretValueInput{SecretIdList: ids, NextToken: next})
		if err != nil {
			return nil, m.observe(m.s.classify(what, "secretsmanager:BatchGetSecretValue", err, nil))
		}
		m.observe(nil)
		for _, v := range out.SecretValues {
			// The answer names the secret by name and ARN; the request may
			// have used either.
			var asked []string
			for _, id := range []string{v.Name, v.ARN} {
				if want[id] {
					asked = append(asked, id)
				}
			}
			if len(asked) == 0 {
				continue
			}
			o, err := smObject(fmt.Sprintf("aws-sm: get secret %q", asked[0]), v.SecretString, v.SecretBinary, v.VersionId)
			for _, id := range asked {
				got[id] = sources.Result{Object: o, Err: err}
			}
		}
		out.Wipe() // values that answered no id asked for
		for _, e := range out.Errors {
			if want[e.SecretId] {
				got[e.SecretId] = sources.Result{Err: m.batchError(e.SecretId, e)}
			}
		}
		if next = out.NextToken; next == "" {
			return got, nil
		}
	}
}

func (m *secretsManager) batchError(id string, e awsjson.APIErrorType) error {
	err := &smithy.GenericAPIError{Code: e.ErrorCode, Message: e.Message}
	return m.s.classify(fmt.Sprintf("aws-sm: get secret %q", id), "secretsmanager:GetSecretValue", err, nil)
}
