// Package nomad_test validates the Nomad job with a real Nomad (v1.4.1,
// built by test/tools/nomad.sh) and runs the sidecar end to end under
// `nomad agent -dev` with the raw_exec driver.
package nomad_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/deploy/internal/kit"
	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

const jobFile = "phase-console.nomad.hcl"

// identityBlock matches the workload identity blocks of the job. Nomad
// 1.4.1, the last MPL release and the one the tests run, predates the
// identity block (1.5+; named identities with aud from 1.7), so validation
// runs on the job without them and their shape is checked here.
var identityBlock = regexp.MustCompile(`(?s)\n      identity \{\n(.*?)\n      \}\n`)

func TestIdentityBlocks(t *testing.T) {
	b, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	job := string(b)
	blocks := identityBlock.FindAllStringSubmatch(job, -1)
	if len(blocks) != 2 {
		t.Fatalf("want an identity block in secrets-init and phase-sidecar, found %d", len(blocks))
	}
	for _, m := range blocks {
		for _, want := range []string{`name = "vault_default"`, `aud  = ["vault.io"]`, `file = true`} {
			if !strings.Contains(m[1], want) {
				t.Errorf("identity block lacks %s:\n%s", want, m[1])
			}
		}
	}
	// The default identity named vault_default is written to
	// secrets/nomad_vault_default.jwt, mounted at /secrets in docker tasks.
	if !strings.Contains(job, "jwt_file: /secrets/nomad_vault_default.jwt") || !strings.Contains(job, "method: jwt") {
		t.Error("the sidecar config must log in with jwt auth from /secrets/nomad_vault_default.jwt")
	}
}

// agent is a `nomad agent -dev` on free loopback ports.
type agent struct {
	bin, addr string
}

func (a agent) nomad(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(a.bin, args...)
	cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://"+a.addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nomad %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startAgent starts a dev agent that lives until the test's cleanups run.
// Its data dir is outside t.TempDir: Nomad mounts a tmpfs on each task's
// secrets/ directory, which is unmounted before the dir is removed.
func startAgent(t *testing.T, bin string) agent {
	t.Helper()
	dir, err := os.MkdirTemp("", "phase-sidecar-nomad-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "data", "alloc", "*", "alloc", "logs", "*"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", filepath.Base(l), b)
			}
		}
		unmountUnder(t, dir)
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	http, rpc, serf := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	cfg := filepath.Join(dir, "agent.hcl")
	kit.WriteFile(t, cfg, fmt.Sprintf(`data_dir  = %q
bind_addr = "127.0.0.1"
# No calls home: the tests reach nothing but loopback.
disable_update_check = true
ports {
  http = %d
  rpc  = %d
  serf = %d
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
`, filepath.Join(dir, "data"), http, rpc, serf))
	kit.Start(t, ctx, bin, "agent", "-dev", "-config", cfg)
	a := agent{bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", http)}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	waitFor(t, wctx, "the Nomad node to be ready", func() bool {
		cmd := exec.Command(bin, "node", "status")
		cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://"+a.addr)
		out, err := cmd.Output()
		return err == nil && strings.Contains(string(out), "ready")
	})
	return a
}

func TestValidate(t *testing.T) {
	bin := testenv.Tool(t, "PHASE_TEST_NOMAD", "nomad")
	b, err := os.ReadFile(jobFile)
	if err != nil {
		t.Fatal(err)
	}
	stripped := filepath.Join(t.TempDir(), jobFile)
	kit.WriteFile(t, stripped, identityBlock.ReplaceAllString(string(b), "\n"))

	// With an agent, validate also checks each task's driver config.
	a := startAgent(t, bin)
	out := a.nomad(t, "job", "validate", stripped)
	if !strings.Contains(out, "Job validation successful") || strings.Contains(out, "not validated") {
		t.Fatalf("nomad job validate:\n%s", out)
	}
}

// TestEndToEnd runs a job shaped like the kit's under raw_exec: secrets-init
// (prestart) runs `once`, phase-sidecar (prestart sidecar) runs `run`, and
// the app starts after them, finds its secret file, writes its pid into the
// shared alloc dir and gets SIGHUP when the source file changes. The
// output directory is a tmpfs under /dev/shm; with raw_exec all tasks share
// the host PID namespace.
func TestEndToEnd(t *testing.T) {
	bin := testenv.Tool(t, "PHASE_TEST_NOMAD", "nomad")
	dir := t.TempDir()
	sidecar := kit.BuildSidecar(t, dir)
	out := kit.TmpfsDir(t)
	src := filepath.Join(dir, "secret-key")
	kit.WriteFile(t, src, "first-placeholder\n")
	marks := filepath.Join(dir, "marks")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	listen := testenv.Addr(t)
	pid := 0

	config := fmt.Sprintf(`output:
  dir: %s
listen: %q
secrets:
  - name: SECRET_KEY
    ref: file://%s
reload:
  signal:
    name: SIGHUP
    pid_file: {{ env "NOMAD_ALLOC_DIR" }}/app.pid
  coalesce: 100ms
`, out, listen, src)
	// The app records whether its secret existed when it started, and on
	// each SIGHUP re-reads it (as gunicorn's new workers would).
	app := fmt.Sprintf(`echo $$ > "$NOMAD_ALLOC_DIR/app.pid.tmp" && mv "$NOMAD_ALLOC_DIR/app.pid.tmp" "$NOMAD_ALLOC_DIR/app.pid"
echo $$ > %[1]s/pid
if [ -s "$SECRET_KEY_FILE" ]; then cp "$SECRET_KEY_FILE" %[1]s/started.tmp; else echo missing > %[1]s/started.tmp; fi
mv %[1]s/started.tmp %[1]s/started
trap 'cp "$SECRET_KEY_FILE" %[1]s/hup.tmp && mv %[1]s/hup.tmp %[1]s/hup' HUP
while :; do sleep 1 & wait $!; done
`, marks)
	job := fmt.Sprintf(`locals {
  sidecar_config = <<EOF
%[1]sEOF
}

job "phase-e2e" {
  datacenters = ["dc1"]
  type        = "service"

  group "app" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    task "secrets-init" {
      driver = "raw_exec"
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }
      config {
        command = %[2]q
        args    = ["once", "--config", "${NOMAD_TASK_DIR}/phase-sidecar.yaml"]
      }
      template {
        destination = "local/phase-sidecar.yaml"
        data        = local.sidecar_config
      }
    }

    task "phase-sidecar" {
      driver = "raw_exec"
      lifecycle {
        hook    = "prestart"
        sidecar = true
      }
      config {
        command = %[2]q
        args    = ["run", "--config", "${NOMAD_TASK_DIR}/phase-sidecar.yaml"]
      }
      template {
        destination = "local/phase-sidecar.yaml"
        data        = local.sidecar_config
      }
    }

    task "app" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", %[3]q]
      }
      env {
        SECRET_KEY_FILE = "%[4]s/secret_key"
      }
    }
  }
}
`, config, sidecar, app, out)
	jobPath := filepath.Join(dir, "phase-e2e.nomad.hcl")
	kit.WriteFile(t, jobPath, job)

	a := startAgent(t, bin)
	a.nomad(t, "job", "validate", jobPath)
	a.nomad(t, "job", "run", "-detach", jobPath)
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command(bin, "job", "status", "-verbose", "phase-e2e")
			cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://"+a.addr)
			b, _ := cmd.CombinedOutput()
			t.Logf("job status:\n%s", b)
		}
		// Stop the tasks before the agent goes: raw_exec executors outlive
		// an agent that is just interrupted.
		cmd := exec.Command(bin, "job", "stop", "-detach", "-purge", "phase-e2e")
		cmd.Env = append(os.Environ(), "NOMAD_ADDR=http://"+a.addr)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nomad job stop: %v\n%s", err, b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		waitFor(t, ctx, "the job's tasks to stop", func() bool {
			c, err := net.Dial("tcp", listen)
			if err == nil {
				c.Close()
			}
			return err != nil && !alive(pid)
		})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	started := filepath.Join(marks, "started")
	waitFor(t, ctx, "the app task to start", func() bool { _, err := os.Stat(started); return err == nil })
	pid = readPid(t, marks)
	if b, _ := os.ReadFile(started); string(b) != "first-placeholder\n" {
		t.Fatalf("the app started without its secret (it saw %q)", b)
	}
	waitFor(t, ctx, "the sidecar to be ready", func() bool {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// Rotate: replace the source atomically; the sidecar writes the new
	// value and signals the pid from the alloc dir.
	kit.WriteFile(t, src+".tmp", "second-placeholder\n")
	if err := os.Rename(src+".tmp", src); err != nil {
		t.Fatal(err)
	}
	hup := filepath.Join(marks, "hup")
	waitFor(t, ctx, "the app to get SIGHUP with the new value", func() bool {
		b, err := os.ReadFile(hup)
		return err == nil && string(b) == "second-placeholder\n"
	})
}

func readPid(t *testing.T, marks string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(marks, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// unmountUnder detaches every mount below dir (Nomad's per-task secrets/
// tmpfs mounts), deepest first.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", mounts[i], err)
		}
	}
}

// waitFor polls cond until it holds or ctx ends (a bounded wait, not a
// timing assertion).
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-tick.C:
		}
	}
}
