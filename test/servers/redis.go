package servers

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phase-sidecar/phase-sidecar/test/testenv"
)

// RedisServer is a running redis-server whose default user has a password:
// the admin account Vault's redis-database-plugin creates users with.
type RedisServer struct {
	Port     int
	HostPort string // 127.0.0.1:PORT
	Password string // the default user's
}

// Redis runs redis-server on a free port of 127.0.0.1 with password for its
// default user, no persistence and its log in dir, and returns once it
// answers PING.
func Redis(t testing.TB, dir, password string) *RedisServer {
	t.Helper()
	bin := testenv.Tool(t, "PHASE_TEST_REDIS", "redis-server")
	port := testenv.FreePort(t)
	r := &RedisServer{Port: port, HostPort: "127.0.0.1:" + strconv.Itoa(port), Password: password}
	logFile := filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log")
	Process(t, logFile, nil, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--requirepass", password, "--save", "", "--appendonly", "no", "--dir", dir)
	waitUp(t, "redis-server", logFile, httpReadyWithin, func(log string) string {
		return strings.ReplaceAll(log, password, "<password>")
	}, func() error { return r.Auth("default", password) })
	return r
}

// Auth opens a new connection and checks user and password with AUTH and
// PING, as a client logging in would.
func (r *RedisServer) Auth(user, password string) error {
	conn, err := net.DialTimeout("tcp", r.HostPort, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	// RESP arrays, so that no byte of the credentials is taken as a separator.
	cmd := func(args ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		return b.String()
	}
	if _, err := conn.Write([]byte(cmd("AUTH", user, password) + cmd("PING"))); err != nil {
		return err
	}
	rd := bufio.NewReader(conn)
	for _, want := range []string{"+OK", "+PONG"} {
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(line); got != want {
			return fmt.Errorf("redis answered %q, want %q", got, want)
		}
	}
	return nil
}
