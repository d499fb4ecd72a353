package reload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExecNotify(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "changed")
	childPID := filepath.Join(dir, "child.pid")
	tests := []struct {
		name     string
		command  []string
		timeout  time.Duration
		wantErr  string
		wantLogs []string
	}{
		{
			name:     "names in the environment",
			command:  []string{"sh", "-c", `printf %s "$PHASE_SIDECAR_CHANGED" > "$1"; echo reloaded`, "sh", out},
			wantLogs: []string{"reload command finished", "output=reloaded"},
		},
		{
			name:     "output captured and truncated",
			command:  []string{"sh", "-c", `echo start; head -c 10000 /dev/zero | tr '\0' x; echo oops >&2`},
			wantLogs: []string{"output=\"start\\nxxxx", "(truncated, 10011 bytes in all)"},
		},
		{
			name:     "failure",
			command:  []string{"sh", "-c", "echo bad config >&2; exit 3"},
			wantErr:  `exec: "sh": exited with status 3`,
			wantLogs: []string{"level=WARN", "bad config"},
		},
		{
			name:    "not found",
			command: []string{filepath.Join(dir, "no-such-program")},
			wantErr: "no such file",
		},
		{
			// The shell's background child is in the same process group
			// and dies with it.
			name:    "timeout kills the process group",
			command: []string{"sh", "-c", `sleep 1000 & echo $! > "$1"; wait`, "sh", childPID},
			timeout: 100 * time.Millisecond,
			wantErr: `exec: "sh": killed after the 100ms timeout`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, logs := newLogger()
			e, err := NewExec(ExecConfig{Command: tt.command, Timeout: tt.timeout}, logger)
			if err != nil {
				t.Fatal(err)
			}
			err = e.Notify(context.Background(), Batch{Secrets: []string{"DATABASE_PASSWORD", "SECRET_KEY"}})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Notify: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Notify = %v, want %q", err, tt.wantErr)
			}
			for _, want := range tt.wantLogs {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, logs.String())
				}
			}
		})
	}

	if b, err := os.ReadFile(out); err != nil || string(b) != "DATABASE_PASSWORD,SECRET_KEY" {
		t.Errorf("%s = %q, %v; want the changed names", ChangedEnv, b, err)
	}
	b, err := os.ReadFile(childPID)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// SIGKILL is delivered asynchronously: give the kernel a moment to reap.
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the timed-out command's child %d still runs", pid)
			break
		}
	}
}

// alive reports whether pid is a live process (not gone, not a zombie
// waiting for a reaper).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func TestExecCheck(t *testing.T) {
	e, err := NewExec(ExecConfig{Command: []string{"definitely-not-a-program-xyz"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Check(); err == nil || !strings.Contains(err.Error(), "definitely-not-a-program-xyz") {
		t.Fatalf("Check = %v", err)
	}
	e, _ = NewExec(ExecConfig{Command: []string{"sh"}}, nil)
	if err := e.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestChildEnvDropsCredentials(t *testing.T) {
	got := ChildEnv([]string{"PATH=/bin", "VAULT_TOKEN=s.x", "AWS_SECRET_ACCESS_KEY=k", "AWS_REGION=eu-west-1",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN=t", "VAULT_TOKEN_FILE_LIKE=kept", "HOME=/root"})
	want := []string{"PATH=/bin", "AWS_REGION=eu-west-1", "VAULT_TOKEN_FILE_LIKE=kept", "HOME=/root"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("ChildEnv = %v, want %v", got, want)
	}
}
