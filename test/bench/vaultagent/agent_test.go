// Package vaultagent measures phase-sidecar side by side with Vault Agent
// (the same Vault binary, "vault agent" rendering the same secrets with
// templates) at equal refresh settings: resident memory, CPU while idle, and
// the time from a KV write to the file changing. Run with:
//
//	PHASE_TEST_VAULT=$(test/tools/vault.sh | tail -n1) \
//	go test -run '^$' -bench . -benchtime 1x -timeout 30m ./test/bench/vaultagent
//
// PHASE_BENCH_IDLE (default 10m) sets the idle window, PHASE_BENCH_REFRESH
// (default 5s) the refresh interval of both. It reports numbers; it asserts
// nothing about speed.
package vaultagent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/servers"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

const (
	secrets   = 100
	changes   = 20
	rootToken = "phase-bench-root"
)

func env(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func BenchmarkVaultAgentSideBySide(b *testing.B) {
	vaultBin := testenv.Tool(b, "PHASE_TEST_VAULT", "vault")
	idle := env("PHASE_BENCH_IDLE", 10*time.Minute)
	refresh := env("PHASE_BENCH_REFRESH", 5*time.Second)

	base, err := os.MkdirTemp("/dev/shm", "phase-vault-agent-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })

	// Vault dev server; its secret/ mount is KV v2.
	dev := servers.Vault(b, base, servers.VaultOptions{Token: rootToken})
	addr, root := dev.HostPort, dev.Root
	put := func(i int, v string) {
		for attempt := 0; ; attempt++ {
			_, err := root.Logical().Write(fmt.Sprintf("secret/data/p%d", i), map[string]any{"data": map[string]any{"value": v}})
			if err == nil {
				return
			}
			if attempt > 100 {
				b.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the server is still starting
		}
	}
	for i := range secrets {
		put(i, fmt.Sprintf("value-%d-0", i))
	}
	tokenFile := filepath.Join(base, "token")
	if err := os.WriteFile(tokenFile, []byte(rootToken), 0o600); err != nil {
		b.Fatal(err)
	}

	// phase-sidecar.
	sidecarBin := filepath.Join(base, "phase-sidecar")
	build := exec.Command("go", "build", "-trimpath", "-o", sidecarBin, "../../../cmd/phase-sidecar")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatal(err)
	}
	sidecarOut := filepath.Join(base, "sidecar")
	var y bytes.Buffer
	fmt.Fprintf(&y, "output:\n  dir: %s\nlisten: %q\nrefresh: %s\n", sidecarOut, testenv.Addr(b), refresh)
	fmt.Fprintf(&y, "sources:\n  vault:\n    address: http://%s\n    auth: { method: token, token_file: %s }\nsecrets:\n", addr, tokenFile)
	for i := range secrets {
		fmt.Fprintf(&y, "  - name: P%d\n    ref: vault://secret/p%d#value\n", i, i)
	}
	sidecarCfg := filepath.Join(base, "sidecar.yaml")
	write(b, sidecarCfg, y.String())

	// Vault Agent with one template per secret.
	agentOut := filepath.Join(base, "agent")
	var h bytes.Buffer
	fmt.Fprintf(&h, "vault { address = \"http://%s\" }\n", addr)
	fmt.Fprintf(&h, "auto_auth {\n  method \"token_file\" {\n    config = { token_file_path = %q }\n  }\n}\n", tokenFile)
	fmt.Fprintf(&h, "template_config {\n  static_secret_render_interval = %q\n}\n", refresh.String())
	for i := range secrets {
		fmt.Fprintf(&h, "template {\n  contents = \"{{ with secret \\\"secret/data/p%d\\\" }}{{ .Data.data.value }}{{ end }}\"\n  destination = %q\n}\n",
			i, filepath.Join(agentOut, fmt.Sprintf("p%d", i)))
	}
	agentCfg := filepath.Join(base, "agent.hcl")
	write(b, agentCfg, h.String())
	for _, d := range []string{sidecarOut, agentOut} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}

	sidecar := start(b, base, "phase-sidecar", nil, sidecarBin, "run", "--config", sidecarCfg, "--log-level", "warn")
	agent := start(b, base, "vault-agent", []string{"VAULT_ADDR=http://" + addr}, vaultBin, "agent", "-config="+agentCfg)
	sidecarFile := func(i int) string { return filepath.Join(sidecarOut, fmt.Sprintf("p%d", i)) }
	agentFile := func(i int) string { return filepath.Join(agentOut, fmt.Sprintf("p%d", i)) }
	for i := range secrets {
		want := fmt.Sprintf("value-%d-0", i)
		waitContent(b, sidecarFile(i), want, 2*time.Minute)
		waitContent(b, agentFile(i), want, 2*time.Minute)
	}

	b.ResetTimer()
	// KV write → file changed, both watched at once; one change at a time.
	var sidecarLat, agentLat []time.Duration
	for n := 1; n <= changes; n++ {
		i := n * 7 % secrets
		want := fmt.Sprintf("value-%d-%d", i, n)
		put(i, want)
		t0 := time.Now()
		s, a := make(chan time.Duration), make(chan time.Duration)
		go func() { s <- waitContent(b, sidecarFile(i), want, 3*refresh+30*time.Second).Sub(t0) }()
		go func() { a <- waitContent(b, agentFile(i), want, 3*refresh+30*time.Second).Sub(t0) }()
		sidecarLat, agentLat = append(sidecarLat, <-s), append(agentLat, <-a)
	}

	// Idle: nothing changes; both keep polling Vault every refresh.
	sCPU0, aCPU0 := cpuTicks(b, sidecar), cpuTicks(b, agent)
	time.Sleep(idle)
	sCPU, aCPU := cpuTicks(b, sidecar)-sCPU0, cpuTicks(b, agent)-aCPU0
	sRSS, aRSS := rssKiB(b, sidecar), rssKiB(b, agent)
	b.StopTimer()

	const hz = 100 // USER_HZ on Linux
	pct := func(ticks int64) float64 { return float64(ticks) / hz / idle.Seconds() * 100 }
	b.ReportMetric(float64(sRSS)/1024, "sidecar_rss_MiB")
	b.ReportMetric(float64(aRSS)/1024, "agent_rss_MiB")
	b.ReportMetric(pct(sCPU), "sidecar_idle_cpu_%")
	b.ReportMetric(pct(aCPU), "agent_idle_cpu_%")
	b.ReportMetric(ms(percentile(sidecarLat, 0.5)), "sidecar_change_p50_ms")
	b.ReportMetric(ms(percentile(agentLat, 0.5)), "agent_change_p50_ms")
	b.ReportMetric(ms(slices.Max(sidecarLat)), "sidecar_change_max_ms")
	b.ReportMetric(ms(slices.Max(agentLat)), "agent_change_max_ms")
	b.Logf("%d secrets, refresh %s, idle window %s, %d changes", secrets, refresh, idle, changes)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func write(b *testing.B, path, content string) {
	b.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		b.Fatal(err)
	}
}

// start runs a process with its output in base/<name>.log; it is stopped
// with SIGTERM at cleanup.
func start(b *testing.B, base, name string, extraEnv []string, bin string, args ...string) *exec.Cmd {
	b.Helper()
	log, err := os.Create(filepath.Join(base, name+".log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), extraEnv...)
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		log.Close()
	})
	return cmd
}

// waitContent polls path every millisecond until it holds want and returns
// when it first saw it.
func waitContent(b *testing.B, path, want string, limit time.Duration) time.Time {
	deadline := time.Now().Add(limit)
	for {
		if got, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(got)) == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.Errorf("%s never held the expected value", path)
			return time.Now()
		}
		time.Sleep(time.Millisecond)
	}
}

// cpuTicks is utime+stime of the process, in clock ticks.
func cpuTicks(b *testing.B, cmd *exec.Cmd) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the ")" that closes the command name: state is 3rd,
	// utime the 14th and stime the 15th of the whole line.
	rest := string(raw[bytes.LastIndexByte(raw, ')')+2:])
	f := strings.Fields(rest)
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// rssKiB is VmRSS of the process.
func rssKiB(b *testing.B, cmd *exec.Cmd) int64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
