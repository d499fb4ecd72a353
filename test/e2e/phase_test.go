package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// The Phase kit against Phase's real process shapes. Every config that
// deploy/phase generates is run with its own secrets: and reload: blocks;
// the test only points it elsewhere (output, listen, a 1s refresh, and the
// source: a Vault dev server with a token, or moto through the EC2 metadata
// mock). The apps are the processes of test/apps/phase, started the way
// Phase's containers start theirs.

// kitConfigs are the generated per-container configs, relative to here.
const kitConfigs = "../../deploy/phase/configs"

// phaseDir is test/apps/phase, absolute: the apps run in it.
func phaseDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("../apps/phase")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// kitConfig is one generated config: its container, its source and the
// part of it the test keeps verbatim (secrets: and reload:).
type kitConfig struct {
	name, container, source string
	tail                    string
	keys                    []string // the source object's keys the secrets read
	names                   []string // the secrets' names (NAME of NAME_FILE)
}

var (
	activeRef  = regexp.MustCompile(`(?m)^    ref: (?:vault://secret/phase/console|aws-sm://phase/console)#(\w+)$`)
	activeName = regexp.MustCompile(`(?m)^  - name: (\w+)$`)
)

func loadKitConfigs(t *testing.T) []kitConfig {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kitConfigs, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no generated configs in %s: %v", kitConfigs, err)
	}
	sort.Strings(files)
	var out []kitConfig
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		i := strings.Index(text, "\nsecrets:\n")
		if i < 0 || !strings.Contains(text[i:], "\nreload:\n") {
			t.Fatalf("%s: no secrets: and reload: blocks", f)
		}
		base := strings.TrimSuffix(filepath.Base(f), ".yaml")
		container, source, _ := strings.Cut(base, "-")
		c := kitConfig{name: base, container: container, source: source, tail: text[i+1:]}
		for _, m := range activeRef.FindAllStringSubmatch(c.tail, -1) {
			c.keys = append(c.keys, m[1])
		}
		for _, m := range activeName.FindAllStringSubmatch(c.tail, -1) {
			c.names = append(c.names, m[1])
		}
		if len(c.keys) == 0 || len(c.keys) != len(c.names) {
			t.Fatalf("%s: refs %v and names %v do not pair up", f, c.keys, c.names)
		}
		out = append(out, c)
	}
	return out
}

// phaseSources serves the object phase/console from Vault or moto.
type phaseSources struct {
	vault     *vaultServer
	vaultAuth string // the auth: lines of a token with read access
	aws       *awsSeeder
	imds      *servers.IMDS
	moto      string
	awsMade   bool
}

func startVaultForKit(t *testing.T) *phaseSources {
	t.Helper()
	v := startVault(t)
	policy := v.unique("phase-console-")
	v.policy(t, policy, `path "secret/data/phase/console" { capabilities = ["read"] }`)
	tok, err := v.root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, TTL: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken), 0o600); err != nil {
		t.Fatal(err)
	}
	return &phaseSources{vault: v, vaultAuth: "method: token\n      token_file: " + tokenFile}
}

// sourcesYAML is the sources: section for source ("vault" or "aws").
func (p *phaseSources) sourcesYAML(source string) string {
	if source == "vault" {
		return fmt.Sprintf("sources:\n  vault:\n    address: %s\n    auth:\n      %s\n", p.vault.addr, p.vaultAuth)
	}
	// The kit's credentials (the instance role over IMDSv2); moto's region.
	return fmt.Sprintf("sources:\n  aws:\n    region: %s\n    credentials: imds\n", awsRegion)
}

// put writes generation gen of every key.
func (p *phaseSources) put(t *testing.T, source string, keys []string, gen int) {
	t.Helper()
	data := map[string]any{}
	for _, k := range keys {
		data[k] = genValue(k, gen)
	}
	if source == "vault" {
		p.vault.kvPut(t, "phase/console", data)
		return
	}
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if !p.awsMade {
		p.aws.secret(t, "phase/console", string(b))
		p.awsMade = true
		return
	}
	p.aws.rotate(t, "phase/console", string(b))
}

// genValue is a canary value of key for generation gen.
func genValue(key string, gen int) string {
	return value(fmt.Sprintf("%s-g%d", strings.ToLower(key), gen))
}

// startKitSidecar writes the config (out, listen, refresh 1s, the source,
// then the kit's own secrets: and reload:, plus extra at the end of
// reload:) and starts the sidecar.
func startKitSidecar(t *testing.T, src *phaseSources, c kitConfig, out, extra string) *sidecar {
	t.Helper()
	cfg, addr := writeConfig(t, out, "refresh: 1s\n"+src.sourcesYAML(c.source)+c.tail+extra)
	return start(t, cfg, addr)
}

// phaseProc is a process tree of test/apps/phase in its own process group.
type phaseProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan struct{}
}

// startPhaseProc runs path with argv (argv[0] as the process sees it) in
// dir, with env added to a minimal environment.
func startPhaseProc(t *testing.T, path string, argv []string, dir string, env ...string) *phaseProc {
	t.Helper()
	p := &phaseProc{t: t, out: &testenv.Buffer{}, done: make(chan struct{})}
	p.cmd = &exec.Cmd{Path: path, Args: argv, Dir: dir, Stdout: p.out, Stderr: p.out,
		Env:         append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"}, env...),
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", argv[0], p.out.String())
		}
	})
	return p
}

func (p *phaseProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the whole group (the tree this test started) and reaps it.
func (p *phaseProc) stop() {
	if !p.exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *phaseProc) count(s string) int { return strings.Count(p.out.String(), s) }

// phaseApp is how one container's process is started and observed.
type phaseApp struct {
	variant string
	start   func(t *testing.T) *phaseProc
	ready   func(p *phaseProc) bool
	target  func(p *phaseProc) int // the pid the preset must signal
	got     func(p *phaseProc) int // signals the intended process handled
	stray   func(p *phaseProc) int // signals or damage anywhere else
	exits   bool                   // the signal ends it (restart kind)
}

// noSetproctitle is a PYTHONPATH entry that hides python3-setproctitle:
// the processes keep their command lines, as in Phase's images, which do
// not install it.
func noSetproctitle(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	writeFile(t, filepath.Join(d, "setproctitle.py"), "raise ImportError('hidden by the test: Phase images lack setproctitle')\n")
	return "PYTHONPATH=" + d
}

// gunicornApps start Phase's backend command line under Debian's gunicorn:
// without setproctitle (Phase's image) and with it.
func gunicornApps(t *testing.T, env func() []string) []phaseApp {
	gunicorn := testenv.Tool(t, "PHASE_TEST_GUNICORN", "gunicorn")
	dir := phaseDir(t)
	mk := func(variant string, extra func() []string) phaseApp {
		var addr string
		return phaseApp{
			variant: variant,
			start: func(t *testing.T) *phaseProc {
				addr = testenv.Addr(t)
				return startPhaseProc(t, gunicorn, []string{"gunicorn", "-b", addr, "--workers", "2", "backend.wsgi:application"}, dir, append(env(), extra()...)...)
			},
			ready: func(p *phaseProc) bool {
				resp, err := http.Get("http://" + addr + "/")
				if err == nil {
					resp.Body.Close()
				}
				return err == nil && resp.StatusCode == 200 && p.count("Booting worker") >= 2
			},
			target: func(p *phaseProc) int { return p.cmd.Process.Pid },
			got:    func(p *phaseProc) int { return p.count("Handling signal: hup") },
			stray:  workerHUPs,
		}
	}
	return []phaseApp{
		mk("gunicorn", func() []string { return []string{noSetproctitle(t)} }),
		mk("gunicorn with setproctitle", func() []string { return nil }),
	}
}

// workerHUPs counts gunicorn workers killed by a SIGHUP: workers reset it
// to the default action, so one that reached a worker kills it, and the
// master says so. (Signal 15 is the master's own graceful stop of the old
// workers on reload.)
func workerHUPs(p *phaseProc) int {
	return strings.Count(p.out.String(), "was terminated due to signal 1\n")
}

// rqApps start Phase's worker command line, python manage.py rqworker
// default, as a real RQ worker that is running a job (in its work horse)
// when the signal comes: without setproctitle and with it.
func rqApps(t *testing.T, env func() []string) []phaseApp {
	python := testenv.Tool(t, "PHASE_TEST_RQ_PYTHON", "")
	redis := servers.Redis(t, t.TempDir(), "phase-rq-test")
	// Phase's image runs "python": a link of that name, so that comm is
	// python as there.
	bin := t.TempDir()
	if err := os.Symlink(python, filepath.Join(bin, "python")); err != nil {
		t.Fatal(err)
	}
	dir := phaseDir(t)
	mk := func(variant string, extra func() []string) phaseApp {
		var marks string
		return phaseApp{
			variant: variant,
			exits:   true,
			start: func(t *testing.T) *phaseProc {
				marks = t.TempDir()
				return startPhaseProc(t, filepath.Join(bin, "python"), []string{"python", "manage.py", "rqworker", "default"}, dir,
					append(append(env(), extra()...),
						"PHASE_TEST_REDIS_URL=redis://:"+redis.Password+"@"+redis.HostPort+"/0",
						"PHASE_TEST_JOB_SECONDS=6", "PHASE_TEST_MARKS="+marks)...)
			},
			ready: func(*phaseProc) bool {
				m, _ := filepath.Glob(filepath.Join(marks, "job-started-*"))
				return len(m) == 1
			},
			target: func(p *phaseProc) int { return p.cmd.Process.Pid },
			got:    func(p *phaseProc) int { return p.count("Warm shut down requested") },
			// A signal to the work horse kills the job; a second one to the
			// worker makes the shutdown cold.
			stray: func(p *phaseProc) int {
				done, _ := filepath.Glob(filepath.Join(marks, "job-done-*"))
				n := p.count("Cold shut down") + p.count("Work-horse") + p.count("terminated unexpectedly")
				if len(done) != 1 {
					n++
				}
				return n
			},
		}
	}
	return []phaseApp{
		mk("rq worker", func() []string { return []string{noSetproctitle(t)} }),
		mk("rq worker with setproctitle", func() []string { return nil }),
	}
}

var serverReady = regexp.MustCompile(`server ready (\d+)`)

// nextApps start the frontend: Phase's tree, a node process like yarn's
// running sh -c "node server.js"; and node server.js alone, as images of
// Next.js's standalone output run it. The server retitles itself as
// Next.js does.
func nextApps(t *testing.T, env func() []string) []phaseApp {
	node := testenv.Tool(t, "PHASE_TEST_NODE", "node")
	dir := filepath.Join(phaseDir(t), "frontend")
	app := phaseApp{
		variant: "yarn start, next-server",
		exits:   true,
		start: func(t *testing.T) *phaseProc {
			// yarn.js finds node on PATH, as yarn does.
			return startPhaseProc(t, node, []string{"node", filepath.Join(dir, "yarn.js")}, dir,
				append(env(), "PATH="+filepath.Dir(node)+":"+os.Getenv("PATH"))...)
		},
		ready: func(p *phaseProc) bool { return serverReady.MatchString(p.out.String()) },
		target: func(p *phaseProc) int {
			m := serverReady.FindStringSubmatch(p.out.String())
			pid, _ := strconv.Atoi(m[1])
			return pid
		},
		got: func(p *phaseProc) int { return p.count("server got SIGTERM") },
		stray: func(p *phaseProc) int {
			return p.count("yarn got ") + p.count("server got ") - p.count("server got SIGTERM")
		},
	}
	standalone := app
	standalone.variant = "node server.js (standalone), next-server"
	standalone.start = func(t *testing.T) *phaseProc {
		return startPhaseProc(t, node, []string{"node", "server.js"}, dir, env()...)
	}
	return []phaseApp{app, standalone}
}

var signalSent = regexp.MustCompile(`signal sent.*\bpid"?[=:](\d+)`)

// sentPIDs are the pids the sidecar logged a signal to, in order.
func sentPIDs(s *sidecar) []int {
	var pids []int
	for _, m := range signalSent.FindAllStringSubmatch(s.out.String(), -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	return pids
}

// fileEnv is the app's environment: NAME_FILE for every secret, and the
// plain NAME fallback that Phase reads when the file is missing.
func fileEnv(out string, names []string) []string {
	env := []string{"PHASE_TEST_SETTINGS=" + strings.Join(names, ",")}
	for _, n := range names {
		env = append(env, n+"_FILE="+filepath.Join(out, strings.ToLower(n)), n+"=fallback-"+strings.ToLower(n))
	}
	return env
}

// TestPhaseKitPresets: for every generated config, Vault and AWS alike,
// each rotation reaches the process the preset is for with exactly one
// signal, and nothing else: the gunicorn master (not a worker), the RQ
// worker (not the work horse running a job, which finishes), the Next.js
// server (not yarn's node).
func TestPhaseKitPresets(t *testing.T) {
	configs := loadKitConfigs(t)
	src := startVaultForKit(t)
	src.moto = startMoto(t)
	src.imds = startMetadataMock(t)
	_, src.aws = awsSeeders(t, src.moto)
	gen := 0

	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			out := shm(t)
			env := func() []string { return fileEnv(out, c.names) }
			var apps []phaseApp
			switch c.container {
			case "backend":
				apps = gunicornApps(t, env)
			case "worker":
				apps = rqApps(t, env)
			case "frontend":
				apps = nextApps(t, env)
			default:
				t.Fatalf("no process shape for container %q", c.container)
			}
			if c.source == "aws" {
				awsEnv(t, src.imds.URL, src.moto)
			}
			gen++
			src.put(t, c.source, c.keys, gen)
			s := startKitSidecar(t, src, c, out, "")
			s.waitReady()
			eventually(t, "the first sync's decision", func() bool { return reloadStatus(t, s).InitialSync != "pending" })
			for i, a := range apps {
				p := a.start(t)
				eventually(t, a.variant+" to be ready", func() bool { return a.ready(p) })
				gen++
				src.put(t, c.source, c.keys, gen)
				for j, n := range c.names {
					waitFile(t, filepath.Join(out, strings.ToLower(n)), genValue(c.keys[j], gen))
				}
				eventuallyWithin(t, time.Minute, a.variant+" to get its signal", func() bool { return a.got(p) >= 1 })
				if a.exits {
					select {
					case <-p.done:
					case <-time.After(time.Minute):
						t.Fatalf("%s did not exit after its signal", a.variant)
					}
					if code := p.cmd.ProcessState.ExitCode(); code != 0 {
						t.Errorf("%s exited with %d, want a clean 0", a.variant, code)
					}
				}
				eventually(t, "the reload to be counted", func() bool {
					return vaultMetric(s, "phase_sidecar_reloads_total", "method=signal", "result=success") == float64(i+1)
				})
				if pids := sentPIDs(s); len(pids) != i+1 || pids[i] != a.target(p) {
					t.Errorf("%s: the sidecar signalled pids %v; want one signal per rotation, this one to pid %d", a.variant, pids, a.target(p))
				}
				if n := a.got(p); n != 1 {
					t.Errorf("%s: the intended process handled %d signals, want 1", a.variant, n)
				}
				if n := a.stray(p); n != 0 {
					t.Errorf("%s: %d signals or broken jobs elsewhere in the tree", a.variant, n)
				}
				p.stop()
				t.Logf("%s: rotation %d reached pid %d only", a.variant, i+1, a.target(p))
			}
			if v := vaultMetric(s, "phase_sidecar_reloads_total", "method=signal", "result=error"); v > 0 {
				t.Errorf("%v failed reloads", v)
			}
		})
	}
}

// reloadState is the reload part of /v1/status.
type reloadState struct {
	InitialSync string   `json:"initial_sync"`
	Pending     []string `json:"pending"`
	Error       string   `json:"error"`
}

func reloadStatus(t *testing.T, s *sidecar) reloadState {
	t.Helper()
	code, body := s.get("/v1/status")
	if code != 200 {
		t.Fatalf("/v1/status: %d %s", code, body)
	}
	var doc struct {
		Reload reloadState `json:"reload"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/v1/status: %v", err)
	}
	return doc.Reload
}

// phaseBackend is Phase's backend (test/apps/phase/backend under Debian's
// gunicorn, no setproctitle as in Phase's image), reading its settings
// with get_secret, and a client that reads them back.
type phaseBackend struct {
	*phaseProc
	addr   string
	client *http.Client
}

func startPhaseBackend(t *testing.T, out string, names []string) *phaseBackend {
	t.Helper()
	gunicorn := testenv.Tool(t, "PHASE_TEST_GUNICORN", "gunicorn")
	b := &phaseBackend{addr: testenv.Addr(t), client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	b.phaseProc = startPhaseProc(t, gunicorn, []string{"gunicorn", "-b", b.addr, "--workers", "2", "backend.wsgi:application"}, phaseDir(t),
		append(fileEnv(out, names), noSetproctitle(t))...)
	// Both workers must have read their settings before the test goes on:
	// under load the second one can still be importing the app when a
	// sidecar writes the files, and would then read them, not the
	// fallbacks. Each answer names its worker's pid.
	pids := map[int]bool{}
	eventually(t, "both gunicorn workers to answer", func() bool {
		if pid, err := b.pid(); err == nil {
			pids[pid] = true
		}
		return len(pids) >= 2
	})
	return b
}

// pid is the pid of the worker that answers one request.
func (b *phaseBackend) pid() (int, error) {
	resp, err := b.client.Get("http://" + b.addr + "/")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var doc struct {
		PID int `json:"pid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return 0, err
	}
	return doc.PID, nil
}

// settings is one request: what the answering worker read at start.
func (b *phaseBackend) settings() (map[string]string, error) {
	resp, err := b.client.Get("http://" + b.addr + "/")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var doc struct {
		Settings map[string]string `json:"settings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, err
	}
	return doc.Settings, nil
}

// phaseGeneration is the one generation all values of s belong to, 0 for the
// fallbacks, or -1 for a mix or anything else.
func phaseGeneration(s map[string]string, c kitConfig, upTo int) int {
	found := -2
	for j, n := range c.names {
		g := -1
		if s[n] == "fallback-"+strings.ToLower(n) {
			g = 0
		}
		for k := 1; k <= upTo && g < 0; k++ {
			if s[n] == genValue(c.keys[j], k) {
				g = k
			}
		}
		if g < 0 || (found != -2 && g != found) {
			return -1
		}
		found = g
	}
	return found
}

// kitConfigNamed returns the generated config called name.
func kitConfigNamed(t *testing.T, name string) kitConfig {
	t.Helper()
	i := slices.IndexFunc(loadKitConfigs(t), func(c kitConfig) bool { return c.name == name })
	if i < 0 {
		t.Fatalf("no generated config %s", name)
	}
	return loadKitConfigs(t)[i]
}

// TestPhaseBackendRotations is the kit's promise checked with Phase's own
// reading logic: under real gunicorn, requests in a loop (about 50 a
// second) while the values rotate in Vault; no request fails, every answer
// holds the old or the new generation whole (never a mix, an older one or
// a fallback), and each rotation is one SIGHUP to the master after which
// the new values are served. PHASE_TEST_PHASE_ROTATIONS sets the count.
func TestPhaseBackendRotations(t *testing.T) {
	rotations := 12
	if n, err := strconv.Atoi(os.Getenv("PHASE_TEST_PHASE_ROTATIONS")); err == nil && n > 0 {
		rotations = n
	}
	c := kitConfigNamed(t, "backend-vault")
	src := startVaultForKit(t)
	out := shm(t)
	var gen atomic.Int32
	gen.Store(1)
	src.put(t, "vault", c.keys, 1)
	s := startKitSidecar(t, src, c, out, "")
	s.waitReady()
	app := startPhaseBackend(t, out, c.names)

	var (
		mu                           sync.Mutex
		requests, failed, wrong      int
		latest                       = map[int]time.Time{} // generation → first time served
		firstErr, firstWrong         string
		stop                         = make(chan struct{})
		loopDone                     = make(chan struct{})
		consecutive, convergedToward int
	)
	converged := make(chan int, rotations+1)
	go func() {
		defer close(loopDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			got, err := app.settings()
			cur := int(gen.Load())
			mu.Lock()
			requests++
			switch g := phaseGeneration(got, c, cur); {
			case err != nil:
				failed++
				if firstErr == "" {
					firstErr = err.Error()
				}
			case g != cur && g != cur-1:
				wrong++
				if firstWrong == "" {
					firstWrong = fmt.Sprintf("generation %d while %d is current", g, cur)
				}
			case g == cur:
				if _, ok := latest[g]; !ok {
					latest[g] = time.Now()
				}
				if convergedToward != g {
					convergedToward, consecutive = g, 0
				}
				// Ten answers in a row from new workers: the old ones are gone.
				if consecutive++; consecutive == 10 {
					select {
					case converged <- g:
					default: // a waiter catches up with the next streak
					}
				}
			default:
				consecutive = 0
			}
			mu.Unlock()
		}
	}()
	waitConverged := func(g int) {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			select {
			case got := <-converged:
				if got == g {
					return
				}
			case <-deadline:
				t.Fatalf("the app never served generation %d steadily", g)
			}
		}
	}
	waitConverged(1)
	var delays []time.Duration
	for r := 2; r <= rotations+1; r++ {
		put := time.Now()
		gen.Store(int32(r))
		src.put(t, "vault", c.keys, r)
		waitConverged(r)
		mu.Lock()
		delays = append(delays, latest[r].Sub(put))
		mu.Unlock()
	}
	close(stop)
	<-loopDone

	slices.Sort(delays)
	hups := app.count("Handling signal: hup")
	t.Logf("%d rotations, %d requests, %d failed, %d neither old nor new; %d SIGHUPs to the master; rotation to new values served: median %v, max %v",
		rotations, requests, failed, wrong, hups, delays[len(delays)/2].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond))
	if failed != 0 {
		t.Errorf("%d of %d requests failed (first: %s)", failed, requests, firstErr)
	}
	if wrong != 0 {
		t.Errorf("%d of %d answers held values neither old nor new (first: %s)", wrong, requests, firstWrong)
	}
	if hups != rotations {
		t.Errorf("%d SIGHUPs for %d rotations", hups, rotations)
	}
	if n := workerHUPs(app.phaseProc); n != 0 {
		t.Errorf("%d workers were killed by a SIGHUP of their own", n)
	}
	if pids := sentPIDs(s); len(pids) != rotations || slices.ContainsFunc(pids, func(p int) bool { return p != app.cmd.Process.Pid }) {
		t.Errorf("signals went to %v, want %d to the master %d", pids, rotations, app.cmd.Process.Pid)
	}
}

// TestPhaseFirstSync: the first sync and on_initial_sync with Phase's
// backend. Started before the sidecar (its files missing), the app serves
// the fallbacks until the first sync tells it once (auto); a sidecar
// restarted over matching files tells nobody, or once with always; never
// leaves the app on its fallbacks.
func TestPhaseFirstSync(t *testing.T) {
	c := kitConfigNamed(t, "backend-vault")
	src := startVaultForKit(t)
	src.put(t, "vault", c.keys, 1)
	serves := func(app *phaseBackend, g int) func() bool {
		return func() bool { s, err := app.settings(); return err == nil && phaseGeneration(s, c, 1) == g }
	}

	t.Run("auto, app running first, then restarts", func(t *testing.T) {
		out := shm(t)
		app := startPhaseBackend(t, out, c.names)
		if !serves(app, 0)() {
			t.Fatal("the app does not serve its fallbacks before the sidecar ran")
		}
		s := startKitSidecar(t, src, c, out, "")
		s.waitReady()
		eventually(t, "the fallbacks to be replaced", serves(app, 1))
		if st := reloadStatus(t, s); st.InitialSync != "notified" {
			t.Errorf("initial_sync = %q, want notified", st.InitialSync)
		}
		eventually(t, "one SIGHUP", func() bool { return app.count("Handling signal: hup") == 1 })
		if pids := sentPIDs(s); !slices.Equal(pids, []int{app.cmd.Process.Pid}) {
			t.Errorf("signals went to %v, want the master %d once", pids, app.cmd.Process.Pid)
		}
		s.stop()

		// The sidecar restarts; every file already holds its value.
		s = startKitSidecar(t, src, c, out, "")
		s.waitReady()
		eventually(t, "the first sync's decision", func() bool { return reloadStatus(t, s).InitialSync != "pending" })
		if st := reloadStatus(t, s); !strings.Contains(st.InitialSync, "no file appeared") {
			t.Errorf("initial_sync after a restart = %q", st.InitialSync)
		}
		s.stop()

		s = startKitSidecar(t, src, c, out, "  on_initial_sync: always\n")
		s.waitReady()
		eventually(t, "always to reload once", func() bool { return app.count("Handling signal: hup") == 2 })
		eventually(t, "the reload to be counted", func() bool {
			return vaultMetric(s, "phase_sidecar_reloads_total", "method=signal", "result=success") == 1
		})
		if pids := sentPIDs(s); len(pids) != 1 {
			t.Errorf("always: %d signals, want 1", len(pids))
		}
		if !serves(app, 1)() {
			t.Error("the app does not serve the files after the restarts")
		}
	})

	t.Run("never, app running first", func(t *testing.T) {
		out := shm(t)
		app := startPhaseBackend(t, out, c.names)
		s := startKitSidecar(t, src, c, out, "  on_initial_sync: never\n")
		s.waitReady()
		eventually(t, "the first sync's decision", func() bool { return reloadStatus(t, s).InitialSync != "pending" })
		if st := reloadStatus(t, s); !strings.Contains(st.InitialSync, "never") {
			t.Errorf("initial_sync = %q", st.InitialSync)
		}
		if n := app.count("Handling signal: hup"); n != 0 || !serves(app, 0)() {
			t.Errorf("never: %d SIGHUPs; the app must keep its fallbacks", n)
		}
	})
}

// TestValidateWarnsScriptName: the old worker preset, a bare script name
// that only an argument could match, passes validate with a warning that
// names the fix; the kit's preset passes without one.
func TestValidateWarnsScriptName(t *testing.T) {
	out := shm(t)
	for _, tt := range []struct {
		process string
		warns   bool
	}{{"rqworker", true}, {`"manage.py rqworker|^rq: "`, false}} {
		cfg, _ := writeConfig(t, out, "secrets:\n  - name: A\n    ref: file:///run/a\nreload:\n  signal:\n    name: SIGTERM\n    process: "+tt.process+"\n")
		code, got := runCmd(t, "validate", "--config", cfg)
		if code != 0 {
			t.Fatalf("validate with process %s: exit %d\n%s", tt.process, code, got)
		}
		if warned := strings.Contains(got, "warning:") && strings.Contains(got, "manage.py rqworker"); warned != tt.warns {
			t.Errorf("process %s: warning %v, want %v:\n%s", tt.process, warned, tt.warns, got)
		}
	}
}
