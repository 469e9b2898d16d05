// Package testenv gives tests real services: a PostgreSQL and a ClickHouse
// database of their own (unique name, dropped at the end of the test) on
// servers provided by package localsvc, started once per test binary.
//
// A package whose tests use it calls Main from its TestMain, so that the
// throwaway servers are stopped when the tests end. When a service cannot be
// had, tests fail with the reason if CI=true, and skip with it otherwise.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/localsvc"
	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/topicname"
)

// servers are shared by all tests of one test binary; Main stops them.
type servers struct {
	pgOnce, chOnce sync.Once
	pg             *localsvc.Postgres
	ch             *localsvc.ClickHouse
	pgErr, chErr   error
}

var shared servers

// Main runs the tests and stops the servers they started.
func Main(m *testing.M) {
	code := m.Run()
	shared.pg.Stop()
	shared.ch.Stop()
	os.Exit(code)
}

func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s unavailable: %v (set %s/%s, install the Debian package, or run as root)", what, err, localsvc.EnvPostgresDSN, localsvc.EnvClickHouseDSN)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// UniqueName returns a database name unique to this test run.
func UniqueName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.ToLower(strings.NewReplacer("/", "_", " ", "_", "-", "_").Replace(t.Name()))
	if len(name) > 30 {
		name = name[:30]
	}
	return "jt_" + name + "_" + hex.EncodeToString(b[:])
}

// Postgres returns the DSN of a new, empty PostgreSQL database, dropped at
// the end of the test.
func Postgres(t testing.TB) string {
	t.Helper()
	shared.pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.pg, shared.pgErr = localsvc.StartPostgres(ctx, slog.Default())
	})
	if shared.pgErr != nil {
		unavailable(t, "PostgreSQL", shared.pgErr)
	}
	name := UniqueName(t)
	dsn, err := shared.pg.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shared.pg.DropDatabase(context.Background(), name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return dsn
}

// ClickHouseUsersDir is the users.d of the tests' ClickHouse server ("" for
// one given by DSN): see localsvc.ClickHouse.UsersDir.
func ClickHouseUsersDir(t testing.TB) string {
	t.Helper()
	return sharedClickHouse(t).UsersDir()
}

// sharedClickHouse starts the tests' ClickHouse server once.
func sharedClickHouse(t testing.TB) *localsvc.ClickHouse {
	t.Helper()
	shared.chOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shared.ch, shared.chErr = localsvc.StartClickHouse(ctx, slog.Default())
	})
	if shared.chErr != nil {
		unavailable(t, "ClickHouse", shared.chErr)
	}
	return shared.ch
}

// ClickHouse returns the DSN of a new, empty ClickHouse database, dropped at
// the end of the test.
func ClickHouse(t testing.TB) string {
	t.Helper()
	sharedClickHouse(t)
	name := UniqueName(t)
	dsn, err := shared.ch.CreateDatabase(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shared.ch.DropDatabase(context.Background(), name); err != nil {
			t.Errorf("drop clickhouse database %s: %v", name, err)
		}
	})
	return dsn
}

// Logger returns a logger writing to the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// EnvMySQLDSN names an existing MySQL/MariaDB server's DSN (go-sql-driver
// form, a user allowed to CREATE DATABASE); default root@tcp(127.0.0.1:3306)/.
const EnvMySQLDSN = "JUTONG_MYSQL_DSN"

// MySQL returns the DSN of a new, empty MariaDB/MySQL database (parseTime
// on), dropped at the end of the test. The server is the machine's (see
// .ci/run, which starts or installs MariaDB when it is not running).
func MySQL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvMySQLDSN)
	if base == "" {
		base = "root@tcp(127.0.0.1:3306)/"
	}
	db, err := sql.Open("mysql", base)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		unavailable(t, "MariaDB/MySQL ("+EnvMySQLDSN+")", err)
	}
	name := UniqueName(t)
	if _, err := db.Exec("CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP DATABASE IF EXISTS `" + name + "`"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		db.Close()
	})
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName, cfg.ParseTime, cfg.Loc = name, true, time.UTC
	return cfg.FormatDSN()
}

// conns are the tests' own connections, one per test and DSN.
var conns sync.Map // testing.TB + DSN -> *pgxpool.Pool or driver.Conn

// PostgresPool returns a pool on dsn (a test's own connections to a database
// a sink writes), the same for every call of a test, closed when it ends.
func PostgresPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	key := [2]any{t, dsn}
	if c, ok := conns.Load(key); ok {
		return c.(*pgxpool.Pool)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	conns.Store(key, pool)
	t.Cleanup(func() { conns.Delete(key); pool.Close() })
	return pool
}

// ClickHouseConn returns a native-protocol connection on dsn, the same for
// every call of a test, closed when it ends.
func ClickHouseConn(t testing.TB, dsn string) driver.Conn {
	t.Helper()
	key := [2]any{t, dsn}
	if c, ok := conns.Load(key); ok {
		return c.(driver.Conn)
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	conns.Store(key, conn)
	t.Cleanup(func() { conns.Delete(key); conn.Close() })
	return conn
}

// NamedCorrections reads the first n records of dept's inbox (committed
// ones) and lists, as "key=dispute", those that name the dispute they
// correct (the header jutong.corrects).
func NamedCorrections(ctx context.Context, t testing.TB, k kafkaconn.Config, dept string, n int) []string {
	t.Helper()
	cl, err := k.Client(kgo.ConsumeTopics(topicname.Inbox(dept)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var named []string
	for read := 0; read < n; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			read++
			for _, h := range r.Headers {
				if h.Key == inbox.HeaderCorrects {
					named = append(named, string(r.Key)+"="+string(h.Value))
				}
			}
		})
	}
	return named
}
