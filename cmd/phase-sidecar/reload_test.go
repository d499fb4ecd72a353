package main

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/pkg/config"
	"github.com/phase-sidecar/phase-sidecar/pkg/reload"
)

// TestReloadConfig: what the file says, with config's defaults, reaches
// the reloader unchanged; reload: false secrets are its Exclude list.
func TestReloadConfig(t *testing.T) {
	const secrets = "output: {dir: /run/secrets}\nsecrets:\n" +
		"  - {name: A, ref: \"file:///a\"}\n" +
		"  - {name: B, ref: \"file:///b\", reload: false}\n" +
		"  - {name: C, ref: \"file:///c\", reload: false}\n"
	tests := []struct {
		name, reload string
		want         reload.Config
	}{
		{
			name: "defaults, no method",
			want: reload.Config{Coalesce: time.Second, MaxWait: 10 * time.Second, OnInitialSync: reload.OnInitialAuto},
		},
		{
			name:   "signal",
			reload: "reload: {signal: {name: usr1, process: gunicorn}, coalesce: 2s, max_wait: 1m, on_initial_sync: never}\n",
			want: reload.Config{
				Signal:   &reload.SignalConfig{Name: "SIGUSR1", Process: "gunicorn"},
				Coalesce: 2 * time.Second, MaxWait: time.Minute, OnInitialSync: reload.OnInitialNever,
			},
		},
		{
			name:   "http",
			reload: "reload: {http: {url: \"http://127.0.0.1:8000/-/reload\", status_max: 204, retries: 1}, on_initial_sync: true}\n",
			want: reload.Config{
				HTTP: &reload.HTTPConfig{URL: "http://127.0.0.1:8000/-/reload", Method: "POST",
					StatusMin: 200, StatusMax: 204, Timeout: 5 * time.Second, Retries: 1},
				Coalesce: time.Second, MaxWait: 10 * time.Second, OnInitialSync: reload.OnInitialAlways,
			},
		},
		{
			name:   "exec",
			reload: "reload: {exec: {command: [nginx, -s, reload]}}\n",
			want: reload.Config{
				Exec:     &reload.ExecConfig{Command: []string{"nginx", "-s", "reload"}, Timeout: 30 * time.Second},
				Coalesce: time.Second, MaxWait: 10 * time.Second, OnInitialSync: reload.OnInitialAuto,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("test.yaml", []byte(secrets+tt.reload))
			if err != nil {
				t.Fatal(err)
			}
			got := reloadConfig(cfg)
			want := tt.want
			want.Exclude = []string{"B", "C"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("reloadConfig:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// The headers, credentials among them, are handed over as secret.Values.
func TestReloadConfigHeaders(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte("output: {dir: /run/secrets}\nsecrets:\n  - {name: A, ref: \"file:///a\"}\n"+
		"reload: {http: {url: \"https://app/reload\", headers: {Authorization: Bearer hunter2}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := reloadConfig(cfg).HTTP
	if h == nil || len(h.Headers) != 1 || string(h.Headers["Authorization"].Reveal()) != "Bearer hunter2" {
		t.Fatalf("headers %v", h)
	}
}

// TestReloadConfigFields: every field of config.Reload and Supervise has
// its counterpart of the same name and type in pkg/reload, so a field
// added to one side and not carried over fails here. (Signal, HTTP and
// Exec are converted as whole structs: the compiler checks those.)
func TestReloadConfigFields(t *testing.T) {
	pairs := []struct {
		from, to     any
		notCarried   []string // file-layer fields with a home elsewhere
		notFromThere []string // reload fields filled from elsewhere
	}{
		{config.Reload{}, reload.Config{}, []string{"Supervise"}, []string{"Exclude"}},
		{config.Supervise{}, reload.SupervisorOptions{}, nil, []string{"Logger", "Env", "Stdin", "Stdout", "Stderr"}},
	}
	for _, p := range pairs {
		from, to := reflect.TypeOf(p.from), reflect.TypeOf(p.to)
		for i := range from.NumField() {
			f := from.Field(i)
			if slices.Contains(p.notCarried, f.Name) {
				continue
			}
			g, ok := to.FieldByName(f.Name)
			switch {
			case !ok:
				t.Errorf("%s.%s has no counterpart in %s", from, f.Name, to)
			case f.Type.Kind() == reflect.Pointer:
				if g.Type.Kind() != reflect.Pointer {
					t.Errorf("%s.%s is a pointer, %s.%s is not", from, f.Name, to, g.Name)
				}
			case f.Type != g.Type:
				t.Errorf("%s.%s is %s, %s.%s is %s", from, f.Name, f.Type, to, g.Name, g.Type)
			}
		}
		for i := range to.NumField() {
			g := to.Field(i)
			if _, ok := from.FieldByName(g.Name); !ok && !slices.Contains(p.notFromThere, g.Name) {
				t.Errorf("%s.%s is not filled from %s", to, g.Name, from)
			}
		}
	}
}
