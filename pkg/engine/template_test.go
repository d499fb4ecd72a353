package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/secret"
	"github.com/phase-sidecar/phase-sidecar/pkg/sources"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// TestTemplateFromOneLease: a DATABASE_URL rendered from a user name and
// password of one leased object (input-only secrets) is one job with that
// object: one fetch per cycle, the pair always of one generation, a change
// of output is one change, an unchanged output writes and reports nothing,
// and the inputs write no file and do not count for readiness.
func TestTemplateFromOneLease(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "DB_USER", Ref: testenv.Ref(t, "vault://database/creds/app#username"), InputOnly: true, Required: true},
		config.Secret{Name: "DB_PASS", Ref: testenv.Ref(t, "vault://database/creds/app#password"), InputOnly: true, Required: true},
		config.Secret{Name: "DATABASE_URL", Template: `postgres://{{ secret "DB_USER" | urlencode }}:{{ secret "DB_PASS" | urlencode }}@db:5432/app`, Inputs: []string{"DB_USER", "DB_PASS"}, Required: true},
	)
	gen := 1
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"username": fmt.Sprintf("v-app-%d", gen), "password": fmt.Sprintf("p@ss/%d:", gen)}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	if len(e.jobs) != 1 || len(e.jobs[0].objects) != 1 {
		t.Fatalf("jobs %d, objects %d: want the template and its inputs in one job of one object", len(e.jobs), len(e.jobs[0].objects))
	}
	ctx := context.Background()
	e.runJobs(ctx, e.jobs, true)
	if got := f.read(t, "database_url"); got != "postgres://v-app-1:p%40ss%2F1%3A@db:5432/app" {
		t.Errorf("DATABASE_URL = %q", got)
	}
	if e.sink.Exists("db_user") || e.sink.Exists("db_pass") {
		t.Error("input-only secrets wrote files")
	}
	if m := e.Missing(); len(m) != 0 {
		t.Errorf("missing %v", m)
	}
	if n := src.count(testenv.Ref(t, "vault://database/creds/app").Object()); n != 1 {
		t.Errorf("%d fetches of the lease, want 1", n)
	}
	c := <-f.changes
	if len(c.Secrets) != 1 || c.Secrets[0] != "DATABASE_URL" {
		t.Errorf("change %+v, want DATABASE_URL only", c)
	}

	// Same values: nothing written, nothing reported.
	e.runJobs(ctx, e.jobs, true)
	if len(f.changes) != 0 {
		t.Errorf("an unchanged render reported %+v", <-f.changes)
	}
	// A new lease: one change.
	gen = 2
	e.runJobs(ctx, e.jobs, true)
	if got := f.read(t, "database_url"); got != "postgres://v-app-2:p%40ss%2F2%3A@db:5432/app" {
		t.Errorf("DATABASE_URL = %q", got)
	}
	if c := <-f.changes; len(c.Secrets) != 1 || c.Secrets[0] != "DATABASE_URL" {
		t.Errorf("change %+v", c)
	}
}

// TestTemplateRenderError: a failing template keeps the last good file,
// counts reason=render, and its error holds no value.
func TestTemplateRenderError(t *testing.T) {
	f := newFixture(t,
		config.Secret{Name: "B64", Ref: testenv.Ref(t, "vault://secret/app#v"), InputOnly: true, Required: true},
		config.Secret{Name: "OUT", Template: `{{ secret "B64" | base64decode }}`, Inputs: []string{"B64"}, Required: true},
	)
	val := "aGVsbG8="
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		return kv(map[string]string{"v": val}), nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	e.exportSecrets()
	e.runJobs(context.Background(), e.jobs, true)
	if got := f.read(t, "out"); got != "hello" {
		t.Fatalf("OUT = %q", got)
	}
	val = "s3cr3t-canary not base64"
	e.runJobs(context.Background(), e.jobs, true)
	if got := f.read(t, "out"); got != "hello" {
		t.Errorf("OUT = %q: the last good file must stay", got)
	}
	if v := testutil.ToFloat64(f.m.SecretFetchErrors.WithLabelValues("OUT", "template", "render")); v != 1 {
		t.Errorf("render errors = %v", v)
	}
	st := e.Status()[1]
	if st.LastError == "" || strings.Contains(st.LastError, "canary") || st.Source != "template" || st.Ref != "template" {
		t.Errorf("status %+v", st)
	}
}

// TestFormatDotenv: a whole object written as dotenv lines.
func TestFormatDotenv(t *testing.T) {
	f := newFixture(t, config.Secret{Name: "APP_ENV", Ref: testenv.Ref(t, "vault://secret/app"), Format: "dotenv", Required: true})
	src := &fakeSource{fetch: func(ref sources.Ref) (sources.Object, error) {
		o := kv(map[string]string{"USER": "app", "PASS": "a b"})
		o.Value = secret.FromString(`{"PASS":"a b","USER":"app"}`)
		return o, nil
	}}
	e := f.engine(t, map[string]sources.Source{sources.Vault: src})
	if err := e.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.read(t, "app_env"); got != "PASS='a b'\nUSER='app'\n" {
		t.Errorf("dotenv = %q", got)
	}
}
