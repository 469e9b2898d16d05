package localsvc

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
)

// TestLocalServersNeedTheirPassword: the local PostgreSQL refuses a login
// without the password or with a wrong one, over TCP and over its socket
// (whose directory only the server's user may enter); the local ClickHouse
// refuses its default user without the password. The password survives a
// restart on the same directory, and no log line holds it.
func TestLocalServersNeedTheirPassword(t *testing.T) {
	bin := needPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := filepath.Join(privateDir(t), ".jutong")
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	p, err := startLocalPostgres(ctx, log, bin, Options{Dir: filepath.Join(dir, "postgres")})
	if err != nil {
		t.Fatal(err)
	}
	cleanOutside(t, p)
	u, _ := url.Parse(p.DSN)
	pw, _ := u.User.Password()
	if len(pw) < 16 {
		t.Fatalf("PostgreSQL's password is %q", pw)
	}
	refused := func(dsn, what string) {
		t.Helper()
		var err error
		for range 50 { // the reload that closes the socket's bootstrap trust is asynchronous
			var conn *pgx.Conn
			if conn, err = pgx.Connect(ctx, dsn); err != nil {
				break
			}
			conn.Close(ctx)
			time.Sleep(100 * time.Millisecond)
		}
		if err == nil || !strings.Contains(err.Error(), "password") {
			t.Errorf("PostgreSQL let %s in: %v", what, err)
		}
	}
	refused(fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", u.Host), "a TCP login without a password")
	refused(fmt.Sprintf("postgres://postgres:wrong@%s/postgres?sslmode=disable", u.Host), "a TCP login with a wrong password")
	refused(fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", p.Dir(), u.Port()), "a socket login without a password")
	if st, err := os.Stat(p.Dir()); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the socket's directory is %v (%v), want 0700", st.Mode(), err)
	}
	query(t, ctx, p.DSN, "SELECT 1")
	p.Stop()
	p2, err := startLocalPostgres(ctx, log, bin, Options{Dir: filepath.Join(dir, "postgres")})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Stop()
	if u2, _ := url.Parse(p2.DSN); u2.User.String() != u.User.String() {
		t.Error("the password changed across a restart")
	}
	query(t, ctx, p2.DSN, "SELECT 1")

	chBin := needClickHouse(t)
	c, err := startLocalClickHouse(ctx, log, chBin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	cu, _ := url.Parse(c.DSN)
	chPW, _ := cu.User.Password()
	for what, dsn := range map[string]string{
		"no password":    "clickhouse://" + cu.Host + "/default",
		"wrong password": "clickhouse://default:wrong@" + cu.Host + "/default",
	} {
		opts, _ := clickhouse.ParseDSN(dsn)
		conn, err := clickhouse.Open(opts)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close()
		}
		if err == nil {
			t.Errorf("ClickHouse let a login with %s in", what)
		}
	}
	if err := c.exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("ClickHouse with its password: %v", err)
	}
	for _, secret := range []string{pw, chPW} {
		if strings.Contains(logs.String(), secret) {
			t.Error("a server's password is in the log")
		}
	}
}
