package servers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// PostgresServer is a running PostgreSQL server with a password-auth
// superuser: the admin account Vault's postgresql-database-plugin creates
// roles with.
type PostgresServer struct {
	Port          int
	HostPort      string // 127.0.0.1:PORT
	AdminUser     string
	AdminPassword string
	psql          string
}

// Postgres initialises a cluster in a directory of its own and runs
// PostgreSQL on a free port of 127.0.0.1 (TCP only, scram-sha-256 for every
// connection, no fsync), its log in dir, and returns once the superuser
// adminUser can log in with adminPassword. PHASE_TEST_POSTGRES (from
// test/tools/postgres.sh) is the server binary; initdb and psql are taken
// from beside it. PostgreSQL refuses to run as root, so under root the
// cluster belongs to, and the server runs as, the user "postgres" that
// Debian's package creates.
func Postgres(t testing.TB, dir, adminUser, adminPassword string) *PostgresServer {
	t.Helper()
	bin := testenv.Tool(t, "PHASE_TEST_POSTGRES", "postgres")
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real // /usr/local/bin/postgres -> /usr/lib/postgresql/N/bin/postgres
	}
	binDir := filepath.Dir(bin)
	initdb := filepath.Join(binDir, "initdb")
	psql := filepath.Join(binDir, "psql")
	if _, err := os.Stat(psql); err != nil {
		if psql, err = exec.LookPath("psql"); err != nil {
			testenv.Missing(t, "psql is not beside %s nor on PATH", bin)
		}
	}

	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("postgres: running as root needs the user postgres (Debian's postgresql package creates it): %v", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// The cluster's own directory: t.TempDir's parents are 0700 and root's.
	root, err := os.MkdirTemp("", "phase-postgres-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	pwFile := filepath.Join(root, "pwfile")
	if err := os.WriteFile(pwFile, []byte(adminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		for _, p := range []string{root, pwFile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	data := filepath.Join(root, "data")
	initCmd := exec.Command(initdb, "-D", data, "-U", adminUser, "--pwfile", pwFile,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions")
	initCmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initCmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	os.Remove(pwFile)

	port := testenv.FreePort(t)
	p := &PostgresServer{Port: port, HostPort: "127.0.0.1:" + strconv.Itoa(port),
		AdminUser: adminUser, AdminPassword: adminPassword, psql: psql}
	logFile := filepath.Join(dir, "postgres-"+strconv.Itoa(port)+".log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start postgres: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// SIGINT is the fast shutdown: the backends are ended too, where
		// SIGKILL of the postmaster would leave them running a while.
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		f.Close()
	})
	waitUp(t, "postgres", logFile, httpReadyWithin, nil, func() error {
		select {
		case <-exited:
			return errors.New("postgres exited")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return p.Login(ctx, adminUser, adminPassword)
	})
	return p
}

// ConnectionURL is the connection_url of Vault's postgresql-database-plugin,
// its credentials left as the plugin's templates.
func (p *PostgresServer) ConnectionURL() string {
	return "postgresql://{{username}}:{{password}}@" + p.HostPort + "/postgres?sslmode=disable"
}

// Login connects over TCP with psql as user with password (given in the
// environment, never on the command line) and checks that the session runs
// as that user: a real login, as an app's would be.
func (p *PostgresServer) Login(ctx context.Context, user, password string) error {
	got, err := p.query(ctx, user, password, "SELECT current_user")
	if err != nil {
		return err
	}
	if got != user {
		return fmt.Errorf("psql: logged in as %q, want %q", got, user)
	}
	return nil
}

// Exec runs sql as the superuser and returns its unaligned, tuples-only
// output.
func (p *PostgresServer) Exec(ctx context.Context, sql string) (string, error) {
	return p.query(ctx, p.AdminUser, p.AdminPassword, sql)
}

func (p *PostgresServer) query(ctx context.Context, user, password, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, p.psql, "-w", "-X", "-q", "-At",
		"-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", user, "-d", "postgres", "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=5", "PGSSLMODE=disable", "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if password != "" {
			msg = strings.ReplaceAll(msg, password, "<password>")
		}
		return "", fmt.Errorf("psql as %s: %v: %s", user, err, msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}
