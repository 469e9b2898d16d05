package localsvc

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// needPostgres skips (or, under CI, fails) when no local PostgreSQL
// binaries can be had; these tests are about the local servers, so a DSN
// from the environment does not replace them.
func needPostgres(t *testing.T) string {
	t.Helper()
	bin := postgresBinDir()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no PostgreSQL binaries under /usr/lib/postgresql (scripts/deps.sh installs them)")
		}
		t.Skip("no PostgreSQL binaries under /usr/lib/postgresql")
	}
	return bin
}

func needClickHouse(t *testing.T) string {
	t.Helper()
	bin := clickhouseBinary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no clickhouse-server (scripts/deps.sh installs it)")
		}
		t.Skip("no clickhouse-server")
	}
	return bin
}

// privateDir is a directory only its owner may enter, as /root is: when the
// tests run as root, the postgres user cannot reach anything below it.
func privateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jutong-private-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// cleanOutside removes a server's files kept outside its directory.
func cleanOutside(t *testing.T, p *Postgres) {
	if strings.HasPrefix(p.Dir(), OutsideRoot+"/") {
		dir := p.Dir()
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
}

func query(t *testing.T, ctx context.Context, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// A data directory its server's user cannot enter (a clone under /root when
// running as root) still gets a PostgreSQL, which keeps its data across
// restarts; the directory says where the files are.
func TestPostgresInAPrivateDirectory(t *testing.T) {
	bin := needPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(privateDir(t), "checkout", ".jutong", "postgres")
	p, err := startLocalPostgres(ctx, slog.Default(), bin, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cleanOutside(t, p)
	if os.Geteuid() == 0 {
		loc, err := os.ReadFile(filepath.Join(dir, "LOCATION"))
		if err != nil || !strings.HasPrefix(string(loc), p.Dir()+"\n") || !strings.HasPrefix(p.Dir(), OutsideRoot) {
			t.Fatalf("as root, the server's files should be under %s and named in LOCATION; dir %s, LOCATION %q (%v)", OutsideRoot, p.Dir(), loc, err)
		}
		if st, err := os.Stat(p.Dir()); err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("the server's directory should be 0700: %v %v", st.Mode(), err)
		}
	}
	query(t, ctx, p.DSN, "CREATE TABLE kept (x int)")
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	p, err = startLocalPostgres(ctx, slog.Default(), bin, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	query(t, ctx, p.DSN, "SELECT * FROM kept")
	// Each start appends to the log: the first start's lines are still there.
	log, _ := os.ReadFile(filepath.Join(p.Dir(), "postgres.log"))
	if n := strings.Count(string(log), "jutong starts"); n != 2 {
		t.Fatalf("the log holds %d starts, want 2 (it must not be overwritten)", n)
	}
}

// A throwaway server works when TMPDIR is private too.
func TestPostgresThrowawayWithPrivateTmp(t *testing.T) {
	bin := needPostgres(t)
	t.Setenv("TMPDIR", privateDir(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := startLocalPostgres(ctx, slog.Default(), bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := p.Dir()
	query(t, ctx, p.DSN, "SELECT 1")
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a throwaway server's directory %s should be gone after Stop: %v", dir, err)
	}
}

// A run that was killed leaves its servers running; the next start on the
// same directory stops them and comes up on the same data.
func TestLeftoverServersAreStopped(t *testing.T) {
	bin := needPostgres(t)
	chBin := needClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	first, err := startLocalPostgres(ctx, slog.Default(), bin, Options{Dir: filepath.Join(dir, "pg")})
	if err != nil {
		t.Fatal(err)
	}
	cleanOutside(t, first)
	query(t, ctx, first.DSN, "CREATE TABLE kept (x int)")
	// The killed run never calls Stop: start again over its server.
	second, err := startLocalPostgres(ctx, slog.Default(), bin, Options{Dir: filepath.Join(dir, "pg")})
	if err != nil {
		t.Fatalf("a second start over a leftover server: %v", err)
	}
	defer second.Stop()
	select {
	case <-first.srv.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover PostgreSQL still runs")
	}
	query(t, ctx, second.DSN, "SELECT * FROM kept")

	ch1, err := startLocalClickHouse(ctx, slog.Default(), chBin, Options{Dir: filepath.Join(dir, "ch")})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch1.exec(ctx, "CREATE TABLE default.kept (x UInt8) ENGINE = TinyLog"); err != nil {
		t.Fatal(err)
	}
	ch2, err := startLocalClickHouse(ctx, slog.Default(), chBin, Options{Dir: filepath.Join(dir, "ch")})
	if err != nil {
		t.Fatalf("a second start over a leftover ClickHouse: %v", err)
	}
	defer ch2.Stop()
	select {
	case <-ch1.srv.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover ClickHouse still runs")
	}
	if err := ch2.exec(ctx, "SELECT * FROM default.kept"); err != nil {
		t.Fatal(err)
	}
}

// A server that cannot start fails the start with its own words, at once.
func TestFailingServerFailsFast(t *testing.T) {
	bin := needPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "pg")
	p, err := startLocalPostgres(ctx, slog.Default(), bin, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cleanOutside(t, p)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	// Files of a version this server cannot read.
	if err := os.WriteFile(filepath.Join(p.Dir(), "data", "PG_VERSION"), []byte("99\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = startLocalPostgres(ctx, slog.Default(), bin, Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "incompatible") {
		t.Fatalf("want the server's own error (incompatible files), got %v", err)
	}
	if d := time.Since(began); d > 30*time.Second {
		t.Fatalf("failing took %s", d)
	}
}

func TestStopLeftoverIgnoresOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "x.pid")
	// Our own pid: alive, but its command line does not name the marker.
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := stopLeftover(slog.Default(), pidFile, "/no/such/marker", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// A pid that does not exist.
	if err := os.WriteFile(pidFile, []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := stopLeftover(slog.Default(), pidFile, "x", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

func TestDatabaseOfDSN(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u@127.0.0.1:5432/jutong_x?sslmode=disable": "jutong_x",
		"postgresql://u@h/":                "",
		"host=127.0.0.1 user=u dbname=abc": "abc",
		"host=127.0.0.1 user=u":            "",
	} {
		if got := PostgresDatabase(dsn); got != want {
			t.Errorf("PostgresDatabase(%q) = %q, want %q", dsn, got, want)
		}
	}
	if got := ClickHouseDatabase("clickhouse://127.0.0.1:9000/analytics"); got != "analytics" {
		t.Errorf("ClickHouseDatabase = %q", got)
	}
	if got := PostgresMaintenanceDSN("postgres://u@h:1/x?sslmode=disable"); got != "postgres://u@h:1/postgres?sslmode=disable" {
		t.Errorf("PostgresMaintenanceDSN = %q", got)
	}
	if got := ClickHouseMaintenanceDSN("clickhouse://h:9000/x"); got != "clickhouse://h:9000/default" {
		t.Errorf("ClickHouseMaintenanceDSN = %q", got)
	}
}
