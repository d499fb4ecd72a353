// Package fleet runs a fleet of real client processes — phase-sidecar, or
// Vault Agent for comparison — against one real backend (a Vault dev
// server, or moto for Secrets Manager and SSM) through a proxy that counts
// every request and can fail them, and reports the load the fleet puts on
// the backend: started together, healthy, during an outage, and after it.
//
// A run has four phases on one clock, in whole seconds from the start of
// the processes: the first cycle (the start burst), healthy, outage (the
// proxy answers with a Fault), recovery. During the outage new values are
// written straight to the backend; every pod must keep the old files while
// it lasts and hold the new ones soon after it.
package fleet

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Backend is the server a fleet reads from.
type Backend interface {
	Name() string
	// URLs are where the proxy forwards to, in turn: servers holding the
	// same values.
	URLs() []string
	// Classes are the request classes counted, Classify a request's class.
	Classes() []string
	Classify(r *http.Request) string
	// Put writes generation gen of every value of n pods with paths each,
	// straight to the backend (not through the proxy).
	Put(t testing.TB, n, paths, gen int)
	// Ref is the phase-sidecar ref of pod i's path j.
	Ref(i, j int) string
	// Sources is the sources: section of a phase-sidecar config, Env the
	// environment a client needs, both for reaching the backend at proxyURL.
	Sources(proxyURL string) string
	Env(proxyURL string) []string
}

// Client is the program each pod runs.
type Client interface {
	Name() string
	// Command is the command of pod p, which reads b through proxyURL and
	// writes path j of its pod to p.Out/File(j).
	Command(t testing.TB, b Backend, p Pod, o Options, proxyURL string) *exec.Cmd
}

// Pod is one client process's place.
type Pod struct {
	I    int
	Dir  string // its config and log
	Out  string // its output directory
	Disk bool   // Out is not on tmpfs
}

// File is the name of path j's file in a pod's output directory.
func File(j int) string { return fmt.Sprintf("p%d", j) }

// Value is generation gen of pod i's path j.
func Value(i, j, gen int) string { return fmt.Sprintf("fleet-s%d-p%d-gen%d", i, j, gen) }

// Options shape a run. Durations are rounded to whole seconds.
type Options struct {
	N, Paths int           // pods, and paths per pod
	Refresh  time.Duration // the clients' refresh interval
	Healthy  time.Duration // start → outage; the healthy window is [Refresh, Healthy)
	Outage   time.Duration
	Recovery time.Duration // the window after the outage that is measured
	Fault    Fault         // the proxy's answer during the outage
	// Quota is, for the Quota fault, the share of the healthy mean the
	// proxy forwards (default 0.5).
	Quota float64
	// RetryAfter is the Retry-After of RateLimited answers (default 5s).
	RetryAfter time.Duration
	// ReadyWithin bounds start → every pod holds every value (default
	// 2m); FreshWithin bounds outage end → every pod holds the values
	// written during the outage (default the breaker's cap 5m + Refresh).
	ReadyWithin, FreshWithin time.Duration
}

func (o Options) withDefaults() Options {
	if o.RetryAfter == 0 {
		o.RetryAfter = 5 * time.Second
	}
	if o.Quota == 0 {
		o.Quota = 0.5
	}
	if o.ReadyWithin == 0 {
		o.ReadyWithin = 2 * time.Minute
	}
	if o.FreshWithin == 0 {
		o.FreshWithin = 5*time.Minute + o.Refresh
	}
	return o
}

// Result is what a run measured.
type Result struct {
	Name    string
	Options Options
	Series  Series        // seconds [0, Healthy+Outage+Recovery)
	Ready   time.Duration // start → every pod held every value
	Rotate  time.Duration // how long writing the new values took
	Lost    []string      // per pod, the first file lost or changed during the outage
	Exited  []string      // pods whose process ended
	Passed  int64         // under the Quota fault, the requests it forwarded
	// Fresh is per pod: outage end → all its files hold the new values;
	// -1 when that did not happen within FreshWithin.
	Fresh []time.Duration

	logs []string // per pod, its log file (gone after the test)
}

// pod is a started client process.
type pod struct {
	Pod
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // the process's exit, once done is closed
}

// Run starts o.N pods of c against b through a new proxy, runs the phases
// and returns the figures. It fails t when the fleet cannot start;
// everything after that is left to the caller's checks.
func Run(t testing.TB, b Backend, c Client, o Options) *Result {
	t.Helper()
	o = o.withDefaults()
	res := &Result{Name: fmt.Sprintf("%s, %s %s", c.Name(), b.Name(), o.Fault), Options: o}
	b.Put(t, o.N, o.Paths, 0)
	counts := NewCounts(b.Classify, b.Classes()...)
	proxy := NewProxy(t, b.URLs(), counts, o.RetryAfter)

	pods := newPods(t, b, c, o, proxy.URL)
	for _, p := range pods {
		res.logs = append(res.logs, p.log)
	}

	t.Cleanup(func() { stop(pods) })
	start := time.Now()
	counts.Begin(start)
	for _, p := range pods {
		p.start(t)
	}
	at := func(d time.Duration) time.Time { return start.Add(d.Round(time.Second)) }

	// Start: every pod writes every value.
	ready := waitAll(pods, o.Paths, 0, start, start.Add(o.ReadyWithin))
	for i, d := range ready {
		if d < 0 {
			t.Fatalf("%s: pod %d did not write its %d files within %s (exited: %v); its log:\n%s", res.Name, i, o.Paths, o.ReadyWithin, exited(pods), tail(pods[i].log))
		}
		res.Ready = max(res.Ready, d)
	}

	// Healthy, then the outage: the values change behind it.
	sleepUntil(at(o.Healthy))
	if o.Fault == Quota {
		// A share of what the fleet asked for while healthy.
		c, h := secs(o.Refresh), secs(o.Healthy)
		proxy.SetQuota(o.Quota * counts.Series(h).Mean(min(c, h), h))
	}
	proxy.SetFault(o.Fault)
	outageEnd := at(o.Healthy + o.Outage)
	lost := make(chan []string)
	go func() {
		if o.Fault == Quota {
			// Some requests pass, so new values may arrive during it; and
			// writing them takes longer than the outage while the backend
			// serves the quota: the quota ends on time, not after them.
			sleepUntil(outageEnd)
			proxy.SetFault(None)
			res.Passed = proxy.Passed()
			lost <- nil
			return
		}
		lost <- watchKept(pods, o.Paths, outageEnd)
	}()
	t0 := time.Now()
	b.Put(t, o.N, o.Paths, 1)
	res.Rotate = time.Since(t0)
	if time.Now().After(outageEnd) {
		t.Logf("%s: writing the new values took %s, longer than the outage", res.Name, res.Rotate)
	}
	res.Lost = <-lost
	sleepUntil(outageEnd)
	proxy.SetFault(None)

	// Recovery: every pod picks up the new values.
	res.Fresh = waitAll(pods, o.Paths, 1, outageEnd, outageEnd.Add(o.FreshWithin))
	sleepUntil(at(o.Healthy + o.Outage + o.Recovery))
	res.Series = counts.Series(secs(o.Healthy + o.Outage + o.Recovery))
	for _, p := range pods {
		if p.exited() {
			res.Exited = append(res.Exited, fmt.Sprintf("pod %d: %v\n%s", p.I, p.err, tail(p.log)))
		}
	}
	return res
}

// Check fails t when a pod lost a file during the outage, was not fresh
// within FreshWithin after it, or exited.
func (r *Result) Check(t testing.TB) {
	t.Helper()
	for _, l := range r.Lost {
		t.Errorf("%s: during the outage %s", r.Name, l)
	}
	shown := false
	for i, d := range r.Fresh {
		if d >= 0 {
			continue
		}
		t.Errorf("%s: pod %d did not hold the new values within %s after the outage", r.Name, i, r.Options.FreshWithin)
		if !shown && i < len(r.logs) {
			t.Logf("pod %d's log:\n%s", i, tail(r.logs[i]))
			shown = true
		}
	}
	for _, e := range r.Exited {
		t.Errorf("%s: exited early: %s", r.Name, e)
	}
}

// newPods prepares o.N pods of c, each with its own directory and output
// directory.
func newPods(t testing.TB, b Backend, c Client, o Options, proxyURL string) []*pod {
	t.Helper()
	outBase, disk := outDir(t)
	dirs := t.TempDir()
	pods := make([]*pod, o.N)
	for i := range pods {
		name := fmt.Sprintf("pod%d", i)
		p := &pod{Pod: Pod{I: i, Dir: filepath.Join(dirs, name), Out: filepath.Join(outBase, name), Disk: disk}, done: make(chan struct{})}
		for _, d := range []string{p.Dir, p.Out} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		p.cmd = c.Command(t, b, p.Pod, o, proxyURL)
		p.log = filepath.Join(p.Dir, "log")
		pods[i] = p
	}
	return pods
}

func (p *pod) start(t testing.TB) {
	t.Helper()
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start pod %d: %v", p.I, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
}

func (p *pod) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends every started pod with SIGTERM, then SIGKILL after 20 s.
func stop(pods []*pod) {
	for _, p := range pods {
		if p.cmd.Process != nil && !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(20 * time.Second)
	for _, p := range pods {
		if p.cmd.Process == nil {
			continue
		}
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func exited(pods []*pod) []int {
	var ids []int
	for _, p := range pods {
		if p.exited() {
			ids = append(ids, p.I)
		}
	}
	return ids
}

// holds reports whether every file of p holds generation gen.
func (p *pod) holds(paths, gen int) bool {
	for j := range paths {
		if b, err := os.ReadFile(filepath.Join(p.Out, File(j))); err != nil || string(b) != Value(p.I, j, gen) {
			return false
		}
	}
	return true
}

// waitAll polls until every pod holds generation gen or deadline passes,
// and returns per pod how long after since it was first seen to (-1:
// never).
func waitAll(pods []*pod, paths, gen int, since, deadline time.Time) []time.Duration {
	got := make([]time.Duration, len(pods))
	left := len(pods)
	for i := range got {
		got[i] = -1
	}
	for left > 0 && time.Now().Before(deadline) {
		for i, p := range pods {
			if got[i] < 0 && p.holds(paths, gen) {
				got[i] = time.Since(since)
				left--
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return got
}

// watchKept checks every 500 ms until end that every pod still holds
// generation 0, and returns the first loss of each pod that had one.
func watchKept(pods []*pod, paths int, end time.Time) []string {
	first := make(map[int]string)
	for time.Now().Before(end) {
		for _, p := range pods {
			if _, ok := first[p.I]; ok {
				continue
			}
			for j := range paths {
				b, err := os.ReadFile(filepath.Join(p.Out, File(j)))
				switch {
				case err != nil:
					first[p.I] = fmt.Sprintf("pod %d lost %s: %v", p.I, File(j), err)
				case string(b) != Value(p.I, j, 0):
					first[p.I] = fmt.Sprintf("pod %d: %s changed to %q", p.I, File(j), b)
				}
				if _, ok := first[p.I]; ok {
					break
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	var lost []string
	for _, p := range pods {
		if l, ok := first[p.I]; ok {
			lost = append(lost, l)
		}
	}
	return lost
}

// outDir is a directory for the pods' output: on tmpfs when /dev/shm is
// usable, else on disk (the clients are then told so).
func outDir(t testing.TB) (dir string, disk bool) {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "phase-fleet-")
	if err != nil {
		return t.TempDir(), true
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d, false
}

// env is this process's environment without the AWS and Vault variables,
// plus extra.
func env(extra []string) []string {
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "VAULT_") {
			e = append(e, kv)
		}
	}
	return append(e, extra...)
}

// parallel runs f(0) … f(n-1) on 8 goroutines and fails t with the first
// error.
func parallel(t testing.TB, n int, f func(int) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for range 8 {
		wg.Go(func() {
			for k := range next {
				if err := f(k); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for k := range n {
		next <- k
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

func secs(d time.Duration) int { return int(d.Round(time.Second) / time.Second) }

// tail is the end of a log file, for failure messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const n = 4 << 10
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
