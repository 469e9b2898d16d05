package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/localsvc"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/access"
)

// proc is a jutong subcommand running in a process of its own (this test
// binary run again, as cmd/jutong).
type proc struct {
	cmd         *exec.Cmd
	out, errOut syncBuffer
	done        chan int
}

// spawn starts `jutong args...` in dir (the test's own when empty); it is
// killed when the test ends.
func spawn(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(exe, "-test.run=^$"), done: make(chan int, 1)}
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), envChildArgs+"="+strings.Join(args, "\n"))
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errOut
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); p.done <- p.cmd.ProcessState.ExitCode(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(time.Minute):
				_ = p.cmd.Process.Kill()
			}
		}
	})
	return p
}

// sigterm sends SIGTERM, as systemd and Kubernetes stop a service, and
// returns how long the process took to exit.
func (p *proc) sigterm(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-p.done:
		took := time.Since(start)
		if code != 0 {
			t.Errorf("exited %d on SIGTERM: %s", code, lastLines(p.errOut.String(), 30))
		}
		return took
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		t.Fatalf("still running %s after SIGTERM: %s", limit, p.out.String())
		return 0
	}
}

// load publishes change events of one item as fast as the bus takes them,
// until stopped; acked counts those the inbox has.
type load struct {
	acked, failed atomic.Int64
	stop          func()
}

func startLoad(t *testing.T, cat *catalog.Catalog, gen *synth.Generator, brokers, registry, dataDir string) *load {
	t.Helper()
	creds, err := access.LoadOrCreate(filepath.Join(dataDir, "credentials.json"), cat)
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := devTLS(t, dataDir)
	ctx, cancel := context.WithCancel(context.Background())
	pub, err := producers.New(ctx, cat, "market_supervision", connect.Config{Brokers: kafkaconn.ParseBrokers(brokers),
		User: "dept.market_supervision", Password: creds["dept.market_supervision"], Registry: registry, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	l := &load{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			evs := make([]*schemas.Event, 200)
			for i := range evs {
				evs[i] = gen.Next()
			}
			err := pub.PublishAsync(ctx, "legal_person.enterprise_registration", func(r producers.Result) {
				if r.Err == nil {
					l.acked.Add(1)
				} else {
					l.failed.Add(1)
				}
			}, evs...)
			if err != nil && !errors.Is(err, context.Canceled) {
				time.Sleep(100 * time.Millisecond) // the bus is stopping: try again
			}
		}
	})
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			pub.Close()
		})
	}
	t.Cleanup(l.stop)
	return l
}

// TestStopUnderLoad: `jutong dev`, then `jutong serve` next to it, each
// stopped with SIGTERM while a department publishes as fast as it can,
// exit within --shutdown-timeout (plus the local databases' own stop), say
// so, and lose or repeat nothing: started again, the sinks hold every
// acknowledged event once. dev runs in a relative --data-dir; its
// jutong.env, sourced from another directory, still serves the CLI.
func TestStopUnderLoad(t *testing.T) {
	if _, err := os.Stat("/usr/lib/postgresql"); err != nil && os.Getenv("CI") != "true" {
		t.Skip("no PostgreSQL binaries")
	}
	if os.Getenv("JUTONG_POSTGRES_DSN") != "" || os.Getenv("JUTONG_CLICKHOUSE_DSN") != "" {
		t.Skip("runs its own local servers under its data dir")
	}
	const timeout = 8 * time.Second
	// StopWithin gives a stop a second past its deadline before it
	// abandons it; the process exits just after.
	const bound = timeout + 2*time.Second
	parent := t.TempDir()
	dataDir := filepath.Join(parent, ".jutong")
	args := []string{"dev", "--apply", "--data-dir", ".jutong", "--kafka-ports", freePorts(t, 3),
		"--registry-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--shutdown-timeout", timeout.String(), "-v", "--authority-analysts"}
	cat, _ := catalog.Sample()
	gen := synth.New(cat.Item("legal_person.enterprise_registration"), 11, time.Now())

	// 1. dev under load.
	dev := spawn(t, parent, args...)
	addrs := waitAddrs(t, &dev.out, &dev.errOut, dev.done)
	env := readEnv(t, filepath.Join(dataDir, "jutong.env"))
	for k, v := range env {
		if strings.HasSuffix(k, "_FILE") || k == "JUTONG_CREDENTIALS" || k == "JUTONG_OFFICERS" {
			if !filepath.IsAbs(v) {
				t.Errorf("jutong.env: %s=%s is not absolute", k, v)
			}
		}
	}
	// Sourced from another directory, jutong.env serves the CLI.
	if out, err := withEnv(dataDir, "catalog", "apply"); err != nil {
		t.Errorf("catalog apply with jutong.env sourced in /: %v\n%s", err, out)
	}
	l := startLoad(t, cat, gen, addrs["Kafka brokers"], addrs["Schema registry"], dataDir)
	landed := waitLanded(t, env, 2000)
	t.Logf("dev under load: %d events landed before SIGTERM", landed)
	took := dev.sigterm(t, bound+time.Minute)
	t.Logf("dev stopped in %s on SIGTERM (--shutdown-timeout %s): %s", took.Round(time.Millisecond), timeout, lastLines(dev.out.String(), 2))
	if took > bound {
		t.Errorf("dev took %s to stop, more than --shutdown-timeout %s allows", took, timeout)
	}
	if !strings.Contains(dev.out.String(), "stopped in") {
		t.Errorf("dev said nothing of its stop: %s", dev.out.String())
	}
	l.stop()
	sent := l.acked.Load()

	// 2. dev again, serve next to it (the same consumer groups), under load.
	dev = spawn(t, parent, args...)
	addrs = waitAddrs(t, &dev.out, &dev.errOut, dev.done)
	env = readEnv(t, filepath.Join(dataDir, "jutong.env"))
	tlsDir := filepath.Join(dataDir, "tls")
	serve := spawn(t, "", "serve", "--brokers", env["JUTONG_KAFKA_BROKERS"], "--kafka-user", env["JUTONG_KAFKA_USER"], "--kafka-password", env["JUTONG_KAFKA_PASSWORD"],
		"--ca", env["JUTONG_CA_FILE"], "--tls-cert", filepath.Join(tlsDir, "server.pem"), "--tls-key", filepath.Join(tlsDir, "server-key.pem"),
		"--secrets-dir", t.TempDir(), "--registry-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0",
		"--postgres-dsn", env["JUTONG_PG_URL"], "--clickhouse-dsn", env["JUTONG_CH_URL"], "--shutdown-timeout", timeout.String())
	for deadline := time.Now().Add(time.Minute); !strings.Contains(serve.out.String(), "Jutong serving"); time.Sleep(50 * time.Millisecond) {
		select {
		case code := <-serve.done:
			t.Fatalf("serve exited %d: %s", code, serve.errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", serve.errOut.String())
		}
	}
	l = startLoad(t, cat, gen, addrs["Kafka brokers"], addrs["Schema registry"], dataDir)
	waitLanded(t, env, landed+4000)
	took = serve.sigterm(t, bound+time.Minute)
	t.Logf("serve stopped in %s on SIGTERM: %s", took.Round(time.Millisecond), lastLines(serve.out.String(), 2))
	if took > bound {
		t.Errorf("serve took %s to stop, more than --shutdown-timeout %s", took, timeout)
	}
	if !strings.Contains(serve.out.String(), "stopped in") {
		t.Errorf("serve said nothing of its stop: %s", serve.out.String())
	}
	time.Sleep(2 * time.Second) // dev, under load, takes serve's partitions
	l.stop()
	sent += l.acked.Load()

	// 3. Every acknowledged event landed once.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ch := testenv.ClickHouseConn(t, env["JUTONG_CH_URL"])
	var n, ids uint64
	for ctx.Err() == nil {
		if err := ch.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM events WHERE item = 'legal_person.enterprise_registration'").Scan(&n, &ids); err != nil {
			t.Fatal(err)
		}
		if int64(n) >= sent {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // anything still landing would be a repeat
	if err := ch.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM events WHERE item = 'legal_person.enterprise_registration'").Scan(&n, &ids); err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse holds %d events (%d ids); the inbox acknowledged %d", n, ids, sent)
	if int64(n) < sent {
		t.Errorf("ClickHouse holds %d events, fewer than the %d acknowledged", n, sent)
	}
	if n != ids {
		t.Errorf("ClickHouse holds %d events for %d event ids: repeats", n, ids)
	}
	pg, err := pgx.Connect(ctx, env["JUTONG_PG_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)
	var rows int
	var keys int64
	if err := ch.QueryRow(ctx, "SELECT toInt64(count()) FROM (SELECT key, argMax(op, kafka_offset) AS last FROM events WHERE item = 'legal_person.enterprise_registration' GROUP BY key) WHERE last != 'DELETE'").Scan(&keys); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		if err := pg.QueryRow(ctx, "SELECT count(*) FROM legal_person.enterprise_registration").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if int64(rows) == keys {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if int64(rows) != keys {
		t.Errorf("PostgreSQL holds %d rows, ClickHouse's events say %d live keys", rows, keys)
	}
	// An idle dev, with a client (this test) still connected to its
	// ClickHouse, which waits for its clients: within the bound too.
	// The audit trail of both runs of dev and the one of serve verifies,
	// from Kafka and from ClickHouse; a department's database login reads
	// what is its to read.
	for _, from := range []string{"kafka", "clickhouse"} {
		out, err := withEnv(dataDir, "audit", "verify", "--from", from, "--clickhouse-dsn", env["JUTONG_CH_URL"])
		if err != nil || !strings.Contains(out, "OK: nothing changed") {
			t.Errorf("audit verify --from %s: %v\n%s", from, err, out)
		}
		t.Logf("audit verify --from %s: %s", from, strings.TrimSpace(out))
	}
	login, err := withEnv(dataDir, "db", "login", "--department", "tax")
	if err != nil {
		t.Fatalf("db login: %v %s", err, login)
	}
	taxDB, err := pgx.Connect(ctx, strings.TrimSpace(login))
	if err != nil {
		t.Fatalf("tax logs in with what db login gave: %v", err)
	}
	if _, err := taxDB.Exec(ctx, "SELECT count(*) FROM geography.standard_address"); err != nil {
		t.Errorf("tax reads an unconditional item: %v", err)
	}
	if _, err := taxDB.Exec(ctx, "SELECT count(*) FROM population.resident_registration"); err == nil {
		t.Error("tax reads a conditional item's base table with no grant")
	}
	taxDB.Close(ctx)
	// The data authority's analysts log in to ClickHouse with what db
	// login gives, and read their database, not the bus's.
	login, err = withEnv(dataDir, "db", "login", "--department", "big_data", "--clickhouse")
	if err != nil {
		t.Fatalf("db login --clickhouse: %v %s", err, login)
	}
	aopts, err := clickhouse.ParseDSN(strings.TrimSpace(login))
	if err != nil {
		t.Fatal(err)
	}
	analysts, err := clickhouse.Open(aopts)
	if err != nil {
		t.Fatal(err)
	}
	var some uint64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if err = analysts.QueryRow(ctx, "SELECT count() FROM events").Scan(&some); err == nil && some > 0 {
			break
		}
	}
	if some == 0 {
		t.Errorf("the authority's analysts read nothing: %v", err)
	}
	if err := analysts.Exec(ctx, "SELECT count() FROM `"+localsvc.ClickHouseDatabase(env["JUTONG_CH_URL"])+"`.events"); err == nil {
		t.Error("the authority's analysts read the bus's database")
	}
	analysts.Close()
	took = dev.sigterm(t, bound+time.Minute)
	t.Logf("dev (idle, a ClickHouse client connected) stopped in %s", took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("dev took %s to stop, more than --shutdown-timeout %s allows", took, timeout)
	}
}

// withEnv runs `jutong args...` in / with dev's jutong.env sourced, as an
// operator would from anywhere.
func withEnv(dataDir string, args ...string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", "-c", `set -a; . "$1"; set +a; exec "$2" -test.run='^$'`, "bash", filepath.Join(dataDir, "jutong.env"), exe)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), envChildArgs+"="+strings.Join(args, "\n"))
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// waitLanded waits until ClickHouse holds at least n events, and returns how many.
func waitLanded(t *testing.T, env map[string]string, n uint64) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ch := testenv.ClickHouseConn(t, env["JUTONG_CH_URL"])
	var got uint64
	for ctx.Err() == nil {
		if err := ch.QueryRow(ctx, "SELECT count() FROM events").Scan(&got); err == nil && got >= n {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("ClickHouse holds %d events, waited for %d", got, n)
	return 0
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], " | ")
}
