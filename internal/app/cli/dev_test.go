package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/localsvc"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/internal/tlsca"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/access"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// envChildArgs makes the test binary run `jutong` with these arguments
// (newline-separated) instead of the tests.
const envChildArgs = "JUTONG_CLI_CHILD_ARGS"

var addrRE = regexp.MustCompile(`(?m)^  (Kafka brokers|Credentials|Schema registry|HTTP gateway|Metrics|PostgreSQL|ClickHouse)\s+(\S+)`)

// waitAddrs waits until out shows the seven addresses `jutong dev` prints.
func waitAddrs(t *testing.T, out, errOut *syncBuffer, exited <-chan int) map[string]string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if m := addrRE.FindAllStringSubmatch(out.String(), -1); len(m) == 7 {
			addrs := map[string]string{}
			for _, x := range m {
				addrs[x[1]] = x[2]
			}
			return addrs
		}
		select {
		case code := <-exited:
			t.Fatalf("jutong dev exited %d: %s", code, errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("jutong dev did not start: %s %s", out.String(), errOut.String())
		}
	}
}

// startDev runs `jutong dev` until the returned stop is called, and returns
// the addresses it printed.
func startDev(t *testing.T, args []string) (addrs map[string]string, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, append([]string{"dev"}, args...), &out, &errOut)
		close(done) // a stop after waitAddrs saw the exit does not wait
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("jutong dev exited %d on Ctrl-C: %s", code, errOut.String())
			}
			if !strings.Contains(out.String(), "stopped in") {
				t.Errorf("no clean shutdown message: %s", out.String())
			}
		})
	}
	// A test that fails before it stops dev must not leave its local
	// databases running.
	t.Cleanup(stop)
	addrs = waitAddrs(t, &out, &errOut, done)
	return addrs, stop
}

// startDevProcess runs `jutong dev` in a process of its own (this test
// binary run again, umask and all, as cmd/jutong), and returns the
// addresses it printed, a kill that ends it with SIGKILL (no clean-up of
// any kind runs) and a stop that ends it with SIGINT, as Ctrl-C does.
func startDevProcess(t *testing.T, args []string) (addrs map[string]string, kill, stop func()) {
	p := spawn(t, "", append([]string{"dev"}, args...)...)
	var once sync.Once
	// stop ends dev as Ctrl-C does; a test that fails before it kills or
	// stops dev stops it so, and its local databases do not outlive it.
	stop = func() {
		once.Do(func() {
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case code := <-p.done:
				if code != 0 {
					t.Errorf("jutong dev exited %d: %s", code, p.errOut.String())
				}
			case <-time.After(time.Minute):
				_ = p.cmd.Process.Kill()
				t.Error("jutong dev did not stop on SIGINT")
			}
		})
	}
	t.Cleanup(stop)
	addrs = waitAddrs(t, &p.out, &p.errOut, p.done)
	return addrs, func() {
		once.Do(func() {
			_ = p.cmd.Process.Kill()
			<-p.done
		})
	}, stop
}

// TestDevRestartKeepsEverything: stop `jutong dev` (as Ctrl-C does) and
// start it again on the same data directory: every record is still served,
// and the sinks neither lose nor repeat anything.
func TestDevRestartKeepsEverything(t *testing.T) { devRestart(t, false) }

// TestDevSurvivesSIGKILL: `jutong dev`, with its own local databases, in a
// data directory under a directory only root may enter (a clone under
// /root), is killed with SIGKILL; started again on the same directory it
// stops the databases the killed run left running, comes up, and nothing
// is lost or repeated.
func TestDevSurvivesSIGKILL(t *testing.T) { devRestart(t, true) }

func devRestart(t *testing.T, sigkill bool) {
	if _, err := os.Stat("/usr/lib/postgresql"); err != nil && os.Getenv("JUTONG_POSTGRES_DSN") == "" && os.Getenv("CI") != "true" {
		t.Skip("no PostgreSQL binaries and no JUTONG_POSTGRES_DSN")
	}
	if os.Getenv("JUTONG_POSTGRES_DSN") != "" || os.Getenv("JUTONG_CLICKHOUSE_DSN") != "" {
		t.Skip("runs its own local servers under its data dir: a shared DSN server would mix runs")
	}
	dir, err := os.MkdirTemp("", "jutong-dev-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if sigkill {
		// A private checkout: 0700 all the way, as under /root.
		dir = filepath.Join(dir, "checkout", ".jutong")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// PostgreSQL's files may live outside (localsvc.OutsideRoot).
			if b, err := os.ReadFile(filepath.Join(dir, "postgres", "LOCATION")); err == nil {
				os.RemoveAll(strings.SplitN(string(b), "\n", 2)[0])
			}
		})
	} else if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--apply", "--data-dir", dir, "--kafka-ports", freePorts(t, 3), "--registry-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cat, _ := catalog.Sample()
	const item = "legal_person.enterprise_registration"
	gen := synth.New(cat.Item(item), 5, time.Now())
	publish := func(addrs map[string]string, n int) {
		creds, err := access.LoadOrCreate(addrs["Credentials"], cat)
		if err != nil {
			t.Fatal(err)
		}
		tc, _ := devTLS(t, dir)
		pub, err := producers.New(ctx, cat, "market_supervision", connect.Config{Brokers: kafkaconn.ParseBrokers(addrs["Kafka brokers"]), User: "dept.market_supervision", Password: creds["dept.market_supervision"], Registry: addrs["Schema registry"], TLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		evs := make([]*schemas.Event, n)
		for i := range evs {
			evs[i] = gen.Next()
		}
		if _, err := pub.Publish(ctx, item, evs...); err != nil {
			t.Fatal(err)
		}
	}
	// waitCounts waits until PostgreSQL and ClickHouse hold the expected state.
	waitCounts := func(addrs map[string]string, events int) {
		env := readEnv(t, filepath.Join(dir, "jutong.env"))
		pg, err := pgx.Connect(ctx, env["JUTONG_PG_URL"])
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close(ctx)
		opts, _ := clickhouse.ParseDSN(env["JUTONG_CH_URL"])
		ch, err := clickhouse.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		var rows int
		var evs uint64
		for ctx.Err() == nil {
			pg.QueryRow(ctx, "SELECT count(*) FROM legal_person.enterprise_registration").Scan(&rows) //nolint:errcheck
			ch.QueryRow(ctx, "SELECT count() FROM events").Scan(&evs)                                 //nolint:errcheck
			if rows == gen.Live() && int(evs) == events {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("sinks hold %d rows and %d events, want %d and %d", rows, evs, gen.Live(), events)
	}

	if sigkill {
		addrs, kill, _ := startDevProcess(t, args)
		publish(addrs, 300)
		waitCounts(addrs, 300)
		privateFiles(t, dir)
		kill()
	} else {
		addrs, stop := startDev(t, args)
		publish(addrs, 300)
		waitCounts(addrs, 300)
		stop()
	}

	addrs, stop := startDev(t, args)
	defer stop()
	// No default password: dev made one, kept for the CLI in jutong.env.
	env := readEnv(t, filepath.Join(dir, "jutong.env"))
	if env["JUTONG_KAFKA_PASSWORD"] == "" || env["JUTONG_KAFKA_PASSWORD"] == "jutong-dev" {
		t.Fatalf("dev's admin password is %q", env["JUTONG_KAFKA_PASSWORD"])
	}
	k := kafkaconn.Config{Brokers: kafkaconn.ParseBrokers(addrs["Kafka brokers"]), User: env["JUTONG_KAFKA_USER"], Password: env["JUTONG_KAFKA_PASSWORD"], CAFile: env["JUTONG_CA_FILE"]}
	cl, err := k.Client(kgo.ConsumeTopics(item), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for n < 300 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	if n != 300 {
		t.Fatalf("after restart the topic serves %d records, want 300", n)
	}
	publish(addrs, 100)
	waitCounts(addrs, 400)
}

// TestDevUsesTheDSNDatabase: a DSN given to `jutong dev` names the database
// the bus writes to.
func TestDevUsesTheDSNDatabase(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	args := []string{"--apply", "--data-dir", t.TempDir(), "--kafka-ports", freePorts(t, 3), "--registry-addr", "127.0.0.1:0",
		"--api-addr", "127.0.0.1:0", "--postgres-dsn", pgDSN, "--clickhouse-dsn", chDSN}
	addrs, stop := startDev(t, args)
	defer stop()
	if got, want := localsvc.PostgresDatabase(addrs["PostgreSQL"]), localsvc.PostgresDatabase(pgDSN); got != want {
		t.Fatalf("dev uses PostgreSQL database %q, the DSN names %q", got, want)
	}
	if got, want := localsvc.ClickHouseDatabase(addrs["ClickHouse"]), localsvc.ClickHouseDatabase(chDSN); got != want {
		t.Fatalf("dev uses ClickHouse database %q, the DSN names %q", got, want)
	}
	ctx := context.Background()
	pg, err := pgx.Connect(ctx, pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(ctx)
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := pg.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'legal_person'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no base-database tables in the database the DSN names")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// privateFiles checks that everything jutong dev wrote under dir (the
// embedded cluster's SASL state and partitions, the credentials, the
// tokens, the local ClickHouse's files) is its owner's alone.
func privateFiles(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil // a file removed meanwhile
		}
		n++
		if fi.Mode().Perm()&0o077 != 0 && fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is mode %v: others may read it", p, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("walked %d files under %s: %v", n, dir, err)
	}
}

// TestNoSecretInLogsOrMetrics: a verbose jutong dev, with traffic, writes no
// password or token in its output and logs, and serves none at /metrics.
func TestNoSecretInLogsOrMetrics(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	dir := t.TempDir()
	const admin = "an-admin-password-of-our-own"
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"dev", "-v", "--apply", "--data-dir", dir, "--kafka-ports", freePorts(t, 3),
			"--registry-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--kafka-password", admin,
			"--postgres-dsn", pgDSN, "--clickhouse-dsn", chDSN}, &out, &errOut)
	}()
	addrs := waitAddrs(t, &out, &errOut, done)
	defer func() { cancel(); <-done }()
	cat, _ := catalog.Sample()
	creds, err := access.LoadOrCreate(addrs["Credentials"], cat)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := access.LoadOrCreateTokens(filepath.Join(dir, "tokens.json"), cat)
	if err != nil {
		t.Fatal(err)
	}
	// Some traffic: the gateway with a good and a bad token.
	_, hc := devTLS(t, dir)
	api := strings.TrimSuffix(addrs["HTTP gateway"], "/v1/items/{code}/events")
	for _, tok := range []string{toks["market_supervision"], "a-forged-token-value"} {
		req, _ := http.NewRequest(http.MethodPost, api+"/v1/items/legal_person.enterprise_registration/events", strings.NewReader("{not json"))
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	resp, err := hc.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	secrets := map[string]string{"the admin password": admin}
	for _, dsn := range []string{pgDSN, chDSN} {
		if u, err := url.Parse(dsn); err == nil {
			if pw, ok := u.User.Password(); ok {
				secrets["the password of "+u.Scheme] = pw
			}
		}
	}
	for p, pw := range creds {
		secrets["the password of "+p] = pw
	}
	for d, tok := range toks {
		secrets["the token of "+d] = tok
	}
	text := out.String() + errOut.String() + string(metrics)
	if !strings.Contains(errOut.String(), "level=INFO") {
		t.Fatal("the verbose log is empty: nothing was checked")
	}
	for what, secret := range secrets {
		if secret != "" && strings.Contains(text, secret) {
			t.Errorf("%s appears in the output, the logs or /metrics", what)
		}
	}
}

// readEnv reads a KEY=VALUE file as jutong dev writes jutong.env.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			env[k] = v
		}
	}
	return env
}

// devTLS is a TLS configuration and an HTTP client trusting the CA that
// jutong dev made in dir.
func devTLS(t *testing.T, dir string) (*tls.Config, *http.Client) {
	t.Helper()
	tc, err := tlsca.Client(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return tc, &http.Client{Transport: tr, Timeout: time.Minute}
}
