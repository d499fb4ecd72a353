package servers

import (
	"context"
	"testing"
	"time"
)

// TestRedis checks the launcher and Auth: the right password logs in, a
// wrong one does not.
func TestRedis(t *testing.T) {
	r := Redis(t, t.TempDir(), "adm1n-redis")
	if err := r.Auth("default", "adm1n-redis"); err != nil {
		t.Fatalf("Auth with the password: %v", err)
	}
	if err := r.Auth("default", "wrong"); err == nil {
		t.Error("Auth with a wrong password succeeded")
	}
}

// TestPostgres checks the launcher and Login: the superuser and a role it
// creates log in, a wrong password and an expired role do not.
func TestPostgres(t *testing.T) {
	p := Postgres(t, t.TempDir(), "phase_admin", "adm1n-pg")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Login(ctx, "phase_admin", "wrong"); err == nil {
		t.Error("Login with a wrong password succeeded")
	}
	if _, err := p.Exec(ctx, `CREATE ROLE app LOGIN PASSWORD 'app-pw'; CREATE ROLE old LOGIN PASSWORD 'old-pw' VALID UNTIL '2000-01-01'`); err != nil {
		t.Fatal(err)
	}
	if err := p.Login(ctx, "app", "app-pw"); err != nil {
		t.Errorf("Login as a new role: %v", err)
	}
	if err := p.Login(ctx, "old", "old-pw"); err == nil {
		t.Error("Login as an expired role succeeded")
	}
}
