package prometheus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/deploy/internal/kit"
	"github.com/phase-sidecar/phase-sidecar/pkg/metrics"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

func TestPromtool(t *testing.T) {
	promtool := testenv.Tool(t, "PHASE_TEST_PROMTOOL", "promtool")
	tests := []struct {
		name string
		args []string
	}{
		{"check config", []string{"check", "config", "prometheus.yml"}},
		{"check rules", []string{"check", "rules", "alerts.yml"}},
		{"test rules", []string{"test", "rules", "alerts_test.yml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := kit.Run(t, promtool, tt.args...)
			if !strings.Contains(out, "SUCCESS") {
				t.Fatalf("promtool %v: no SUCCESS in\n%s", tt.args, out)
			}
		})
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := kit.DecodeStrict(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestAlerts checks that the alerts exist, carry severity and
// both annotations, and that alerts_test.yml has a firing and a quiet
// case for each.
func TestAlerts(t *testing.T) {
	var rules ruleFile
	readYAML(t, "alerts.yml", &rules)
	var tests struct {
		RuleFiles          []string `yaml:"rule_files"`
		EvaluationInterval string   `yaml:"evaluation_interval"`
		Tests              []struct {
			Interval     string           `yaml:"interval"`
			InputSeries  []map[string]any `yaml:"input_series"`
			AlertRuleTes []struct {
				EvalTime  string           `yaml:"eval_time"`
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, "alerts_test.yml", &tests)
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTes {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	var names []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.For == "" {
				t.Errorf("%s: needs for, a severity label, summary and description", r.Alert)
			}
			if !firing[r.Alert] || !quiet[r.Alert] {
				t.Errorf("%s: alerts_test.yml needs a firing case (%v) and a quiet case (%v)", r.Alert, firing[r.Alert], quiet[r.Alert])
			}
		}
	}
	for _, want := range []string{
		"PhaseSidecarSecretStale", "PhaseSidecarSyncFailing", "PhaseSidecarSecretExpiringSoon",
		"PhaseSidecarReloadFailing", "PhaseSidecarSourceDown", "PhaseSidecarIMDSHopLimit",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("alert %s is missing", want)
		}
	}
}

// exported returns every metric name the sidecar can expose, from the
// collectors that pkg/metrics registers.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	var rec recorder
	metrics.New(&rec, "v", "r")
	metrics.Standard(&rec)
	descs := make(chan *prometheus.Desc)
	go func() {
		defer close(descs)
		for _, c := range rec.cs {
			c.Describe(descs)
		}
	}()
	names := map[string]bool{}
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			names[m[1]+suffix] = true
		}
	}
	if !names["phase_sidecar_secret_info"] {
		t.Fatalf("pkg/metrics describes no phase_sidecar_secret_info: %v", names)
	}
	return names
}

// recorder is a Registerer that keeps what is registered on it.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return true }

var metricName = regexp.MustCompile(`phase_sidecar_[a-z_]+`)

// TestMetricNames checks that every phase_sidecar_ name in the rules, the
// dashboard and the docs' examples is one the sidecar exports.
func TestMetricNames(t *testing.T) {
	names := exported(t)
	for _, f := range []string{"alerts.yml", "grafana-dashboard.json", "scrape-kubernetes.yml", "prometheus.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range metricName.FindAllString(string(b), -1) {
			if !names[n] {
				t.Errorf("%s: %s is not exported by pkg/metrics", f, n)
			}
		}
	}
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"Secrets": "table", "Reloads": "timeseries", "Source errors": "timeseries"}
	for _, p := range d.Panels {
		if typ, ok := want[p.Title]; ok {
			if p.Type != typ {
				t.Errorf("panel %q is a %s, want %s", p.Title, p.Type, typ)
			}
			delete(want, p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, q := range p.Targets {
			if !strings.Contains(q.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q query %s ignores the instance variable", p.Title, q.RefID)
			}
		}
		if p.Title == "Secrets" {
			var all string
			for _, q := range p.Targets {
				all += q.Expr
			}
			for _, m := range []string{"secret_info", "last_success_timestamp", "expiry_timestamp", "stale"} {
				if !strings.Contains(all, m) {
					t.Errorf("the Secrets table does not query %s", m)
				}
			}
		}
	}
	for title := range want {
		t.Errorf("panel %q is missing", title)
	}
}

// TestKubernetesScrape checks the shape of the Kubernetes scrape job that
// Debian's promtool cannot check (it is built without Kubernetes service
// discovery): it keeps annotated pods and the port named metrics, which is
// the name the Deployment gives the sidecar's port.
func TestKubernetesScrape(t *testing.T) {
	var f struct {
		ScrapeConfigs []struct {
			JobName    string `yaml:"job_name"`
			Kubernetes []struct {
				Role string `yaml:"role"`
			} `yaml:"kubernetes_sd_configs"`
			Relabel []struct {
				SourceLabels []string `yaml:"source_labels"`
				Action       string   `yaml:"action"`
				Regex        string   `yaml:"regex"`
				TargetLabel  string   `yaml:"target_label"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "scrape-kubernetes.yml", &f)
	if len(f.ScrapeConfigs) != 1 || len(f.ScrapeConfigs[0].Kubernetes) != 1 || f.ScrapeConfigs[0].Kubernetes[0].Role != "pod" {
		t.Fatalf("want one job with pod discovery, got %+v", f.ScrapeConfigs)
	}
	keeps := map[string]string{}
	for _, r := range f.ScrapeConfigs[0].Relabel {
		if r.Action == "keep" {
			keeps[strings.Join(r.SourceLabels, ",")] = r.Regex
		}
	}
	if keeps["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] != "true" || keeps["__meta_kubernetes_pod_container_port_name"] != "metrics" {
		t.Errorf("keep rules = %v", keeps)
	}
}

// TestScrapeRunningSidecar starts the real binary on a file secret and a
// real Prometheus that scrapes it every second, and queries the
// per-secret series through Prometheus' API.
func TestScrapeRunningSidecar(t *testing.T) {
	server := testenv.Tool(t, "PHASE_TEST_PROMETHEUS", "prometheus")
	dir := t.TempDir()
	bin := kit.BuildSidecar(t, dir)
	out := kit.TmpfsDir(t)

	srcFile := filepath.Join(dir, "db-password")
	if err := os.WriteFile(srcFile, []byte("not-a-real-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sidecarAddr := testenv.Addr(t)
	cfg := kit.FileSecretConfig(t, dir, out, sidecarAddr, srcFile, "")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kit.Start(t, ctx, bin, "run", "--config", cfg, "--log-format", "json")
	if err := kit.WaitHTTP(ctx, "http://"+sidecarAddr+"/readyz"); err != nil {
		t.Fatal(err)
	}

	promAddr := testenv.Addr(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	kit.WriteFile(t, promCfg, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: phase-sidecar
    static_configs:
      - targets: [%q]
`, filepath.Join(kit.Deploy(t), "prometheus", "alerts.yml"), sidecarAddr))
	kit.Start(t, ctx, server,
		"--config.file="+promCfg,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr,
		"--log.level=warn")
	if err := kit.WaitHTTP(ctx, "http://"+promAddr+"/-/ready"); err != nil {
		t.Fatal(err)
	}

	query := `phase_sidecar_secret_last_success_timestamp_seconds{job="phase-sidecar"}`
	var result []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for len(result) == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("Prometheus never returned %s", query)
		case <-tick.C:
		}
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(query))
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Status string `json:"status"`
			Data   struct {
				Result json.RawMessage `json:"result"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || body.Status != "success" {
			t.Fatalf("query: %v (status %q)", err, body.Status)
		}
		if err := json.Unmarshal(body.Data.Result, &result); err != nil {
			t.Fatal(err)
		}
	}
	if len(result) != 1 || result[0].Metric["secret"] != "DATABASE_PASSWORD" || result[0].Metric["source"] != "file" {
		t.Fatalf("result = %+v, want one series for DATABASE_PASSWORD from file", result)
	}
	if v, _ := result[0].Value[1].(string); v == "" || v == "0" {
		t.Errorf("last success = %q, want a timestamp", v)
	}
}
