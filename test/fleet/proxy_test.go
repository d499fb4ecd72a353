package fleet

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestProxy(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from backend "+r.Host)
	}))
	t.Cleanup(backend.Close)
	v := &Vault{}
	counts := NewCounts(v.Classify, v.Classes()...)
	p := NewProxy(t, []string{backend.URL}, counts, 7*time.Second)
	counts.Begin(time.Now())

	for _, c := range []struct {
		fault      Fault
		path, amz  string
		code       int
		body, hdr  string // body substring; header "Name: value"
		wantDrop   bool
		wantOrigin bool
	}{
		{fault: None, path: "/v1/secret/data/a", code: 200, wantOrigin: true},
		{fault: Unavailable, path: "/v1/secret/data/a", code: 503, body: `{"errors":["Vault is sealed"]}`},
		{fault: Unavailable, path: "/", amz: "secretsmanager.GetSecretValue", code: 503, body: `"__type":"ServiceUnavailable"`},
		{fault: RateLimited, path: "/v1/auth/approle/login", code: 429, body: "rate limit quota exceeded", hdr: "Retry-After: 7"},
		{fault: RateLimited, path: "/", amz: "AmazonSSM.GetParameters", code: 429, body: `"__type":"TooManyRequestsException"`, hdr: "Retry-After: 7"},
		{fault: Throttled, path: "/", amz: "AmazonSSM.GetParameters", code: 400, body: `{"__type":"ThrottlingException","message":"Rate exceeded"}`, hdr: "X-Amzn-Errortype: ThrottlingException"},
		{fault: Drop, path: "/v1/secret/data/a", wantDrop: true},
	} {
		t.Run(c.fault.String()+c.path+c.amz, func(t *testing.T) {
			p.SetFault(c.fault)
			req, _ := http.NewRequest(http.MethodGet, p.URL+c.path, nil)
			if c.amz != "" {
				req.Header.Set("X-Amz-Target", c.amz)
			}
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			resp, err := client.Do(req)
			if c.wantDrop {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got HTTP %d, want the connection dropped", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.code || !strings.Contains(string(b), c.body) {
				t.Errorf("got HTTP %d %s, want %d with %s", resp.StatusCode, b, c.code, c.body)
			}
			if c.wantOrigin && string(b) != "from backend "+strings.TrimPrefix(p.URL, "http://") {
				t.Errorf("forwarded body %q: want the client's Host kept", b)
			}
			if name, value, ok := strings.Cut(c.hdr, ": "); ok && resp.Header.Get(name) != value {
				t.Errorf("%s = %q, want %q", name, resp.Header.Get(name), value)
			}
		})
	}

	s := counts.Series(1)
	if got := strings.Join(s.Classes, ","); got != "login,read,mounts,other" {
		t.Fatalf("classes %s", got)
	}
	// Reads: a, a, drop; login: one; other: the three AWS requests.
	if want := []int{1, 3, 0, 3}; !reflect.DeepEqual(s.Sec[0], want) {
		t.Errorf("counts %v, want %v (login, read, mounts, other)", s.Sec[0], want)
	}
}

func TestFigures(t *testing.T) {
	// Refresh 2 s, healthy until 6, outage 6–10, recovery 10–12.
	r := &Result{Options: Options{Refresh: 2 * time.Second, Healthy: 6 * time.Second, Outage: 4 * time.Second, Recovery: 2 * time.Second}}
	per := []int{50, 0, 10, 0, 10, 0, 30, 20, 4, 6, 40, 10}
	r.Series = Series{Classes: []string{"read"}}
	for _, n := range per {
		r.Series.Sec = append(r.Series.Sec, []int{n})
	}
	f := r.Figures()
	want := Figures{
		Healthy: 5, PeakToMean: 2, FirstSecond: 50, FirstCyclePeak: 50,
		Outage: 3, OutageFirst5: 3, Late: 10, LateHealthy: 10, LateRatio: 1, RecoveryPeak: 8,
		HealthyByClass: []float64{5},
	}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("figures %+v\nwant    %+v", f, want)
	}
}

// Servers holding the same values take the requests in turn.
func TestProxyTakesTargetsInTurn(t *testing.T) {
	var targets []string
	for _, name := range []string{"a", "b", "c"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		targets = append(targets, srv.URL)
	}
	v := &Vault{}
	counts := NewCounts(v.Classify, v.Classes()...)
	p := NewProxy(t, targets, counts, time.Second)
	counts.Begin(time.Now())
	var got []string
	for range 6 {
		resp, err := http.Get(p.URL + "/v1/secret/data/a")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = append(got, string(b))
	}
	if want := []string{"a", "b", "c", "a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("answered by %v, want %v", got, want)
	}
}

// TestProxyQuota: under Quota the proxy forwards up to its rate and
// throttles the rest, as AWS (400 ThrottlingException) or Vault (429)
// would, and counts what it forwarded.
func TestProxyQuota(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from backend")
	}))
	t.Cleanup(backend.Close)
	v := &Vault{}
	counts := NewCounts(v.Classify, v.Classes()...)
	p := NewProxy(t, []string{backend.URL}, counts, time.Second)
	counts.Begin(time.Now())
	p.SetQuota(0.001) // a burst of one, then nothing for 1000 s
	p.SetFault(Quota)
	get := func(amz string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/v1/secret/data/a", nil)
		if amz != "" {
			req.Header.Set("X-Amz-Target", amz)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(""); code != 200 || body != "from backend" {
		t.Fatalf("first request: HTTP %d %s, want it forwarded", code, body)
	}
	if code, body := get(""); code != 429 || !strings.Contains(body, "rate limit quota exceeded") {
		t.Errorf("Vault over the quota: HTTP %d %s, want 429", code, body)
	}
	if code, body := get("secretsmanager.GetSecretValue"); code != 400 || !strings.Contains(body, "ThrottlingException") {
		t.Errorf("AWS over the quota: HTTP %d %s, want 400 ThrottlingException", code, body)
	}
	if n := p.Passed(); n != 1 {
		t.Errorf("Passed() = %d, want 1", n)
	}
}
