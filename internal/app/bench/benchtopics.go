package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/localsvc"
	"github.com/jutong/jutong/internal/procstat"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// benchTopics measures how the pipeline process's start-up and memory grow
// with the number of item topics: for each count, a catalog of that many
// items, one event on each topic, and `jutong serve` (the pipelines) started
// in a child process; it reports the time until every event landed in both
// sinks and the child's resident memory.
func benchTopics(ctx context.Context, args []string, out, errOut io.Writer) error {
	fset := cmdflag.New("bench topics", benchDesc, errOut)
	counts := fset.String("topics", "100,1000,10000", "the topic counts to measure, comma separated")
	partitions := fset.Int("partitions", 1, "partitions per topic")
	pgDSN := fset.EnvString("postgres-dsn", "JUTONG_POSTGRES_DSN", "", "PostgreSQL; empty starts a throwaway local server")
	chDSN := fset.EnvString("clickhouse-dsn", "JUTONG_CLICKHOUSE_DSN", "", "ClickHouse; empty starts a throwaway local server")
	if err := fset.Parse(args); err != nil {
		return err
	}
	var ns []int
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("--topics: bad count %q", s)
		}
		ns = append(ns, n)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "jutong-bench-topics-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	pg := &localsvc.Postgres{DSN: *pgDSN}
	if *pgDSN == "" {
		if pg, err = localsvc.StartPostgres(ctx, log, localsvc.Options{Dir: filepath.Join(dir, "postgres")}); err != nil {
			return err
		}
		defer pg.Stop()
	}
	ch := &localsvc.ClickHouse{DSN: *chDSN}
	if *chDSN == "" {
		if ch, err = localsvc.StartClickHouse(ctx, log, localsvc.Options{Dir: filepath.Join(dir, "clickhouse")}); err != nil {
			return err
		}
		defer ch.Stop()
	}
	fmt.Fprintf(out, "jutong bench topics: the pipeline process (jutong serve: PostgreSQL + ClickHouse sinks) over N item topics, %d partition(s) each, one event per topic\n\n", *partitions)
	fmt.Fprintf(out, "  %8s  %14s  %22s  %12s  %12s\n", "TOPICS", "TOPICS CREATED", "START -> ALL LANDED", "RSS", "PEAK RSS")
	for _, n := range ns {
		r, err := benchTopicsOnce(ctx, self, filepath.Join(dir, fmt.Sprint(n)), n, *partitions, pg, ch)
		if err != nil {
			return fmt.Errorf("%d topics: %w", n, err)
		}
		fmt.Fprintf(out, "  %8d  %14s  %22s  %9.0f MiB  %9.0f MiB\n", n, r.created.Round(10*time.Millisecond),
			r.landed.Round(10*time.Millisecond), float64(r.rss)/1024, float64(r.peak)/1024)
	}
	return nil
}

type topicsResult struct {
	created, landed time.Duration
	rss, peak       int64 // KiB
}

func benchTopicsOnce(ctx context.Context, self, dir string, n, partitions int, pg *localsvc.Postgres, ch *localsvc.ClickHouse) (*topicsResult, error) {
	catDir := filepath.Join(dir, "catalog")
	if err := writeBenchCatalog(catDir, n, partitions); err != nil {
		return nil, err
	}
	cat, err := catalog.Load(os.DirFS(catDir))
	if err != nil {
		return nil, err
	}
	db := fmt.Sprintf("jutong_bench_topics_%d", n)
	_ = pg.DropDatabase(ctx, db)
	_ = ch.DropDatabase(ctx, db)
	pgDSN, err := pg.CreateDatabase(ctx, db)
	if err != nil {
		return nil, err
	}
	chDSN, err := ch.CreateDatabase(ctx, db)
	if err != nil {
		return nil, err
	}
	res := &topicsResult{}
	t0 := time.Now()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, Brokers: 1, KafkaPorts: []int{0}, ApplyTopics: true,
		AdminUser: "jutong", AdminPassword: "bench", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		SecretsDir: dir, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer b.Close(context.Background())
	res.created = time.Since(t0)

	if err := produceOnePerTopic(ctx, b, cat); err != nil {
		return nil, err
	}
	cmd := serveCommand(ctx, self, dir, catDir, b, pgDSN, chDSN, n)
	t0 = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err := waitLanded(ctx, cmd, pgDSN, chDSN, n, t0); err != nil {
		return nil, err
	}
	res.landed = time.Since(t0)
	res.rss, res.peak = procstat.RSS(cmd.Process.Pid)
	return res, nil
}

// produceOnePerTopic produces one event per topic, in one go, straight to
// the item topics as the bus does after its door: a producer
// that discovers thousands of new topics one at a time spends its time in
// metadata.
func produceOnePerTopic(ctx context.Context, b *bus.Bus, cat *catalog.Catalog) error {
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		return err
	}
	var recs []*kgo.Record
	for i, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			return err
		}
		id, err := reg.RegisterSchema(ctx, it.Subject(), sr.Schema{Schema: s.JSON, Type: sr.TypeAvro}, -1, -1)
		if err != nil {
			return err
		}
		e := synth.New(it, uint64(i+1), time.Now()).Next()
		e.Source, e.PublishTime = schemas.Source{Department: it.Source, System: "bench", Adapter: "sdk"}, time.Now()
		payload, err := s.Encode(e)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: it.Topic(), Key: []byte(e.Key), Value: schemas.Frame(nil, id, payload)})
	}
	// As the bus (its door would): this benchmark measures the pipeline
	// process, not the door, and departments write only their inboxes.
	cl, err := b.Kafka().Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

// serveCommand is `jutong serve` for the benchmark's catalog, in a child
// process (this binary), logging and profiling as the environment says.
func serveCommand(ctx context.Context, self, dir, catDir string, b *bus.Bus, pgDSN, chDSN string, n int) *exec.Cmd {
	cmd := exec.CommandContext(ctx, self, "serve", "--brokers", strings.Join(b.Kafka().Brokers, ","),
		"--kafka-user", "jutong", "--kafka-password", "bench", "--insecure-lab", "--typed-views=false", "--registry", b.RegistryURL(),
		"--registry-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--secrets-dir", dir,
		"--catalog", catDir, "--postgres-dsn", pgDSN, "--clickhouse-dsn", chDSN)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if logPath := os.Getenv("JUTONG_BENCH_CHILD_LOG"); logPath != "" { // the child's log, -v
		if f, err := os.Create(logPath + "." + strconv.Itoa(n)); err == nil {
			cmd.Args = append(cmd.Args, "-v")
			cmd.Stderr = f // closed with the process's descriptors when the benchmark ends
		}
	}
	if prof := os.Getenv("JUTONG_BENCH_CHILD_CPUPROFILE"); prof != "" { // to see where start-up goes
		cmd.Env = append(os.Environ(), "JUTONG_CPUPROFILE="+prof+"."+strconv.Itoa(n))
	}
	if prof := os.Getenv("JUTONG_BENCH_CHILD_MEMPROFILE"); prof != "" { // and the memory
		cmd.Env = append(os.Environ(), "JUTONG_MEMPROFILE="+prof+"."+strconv.Itoa(n))
	}
	return cmd
}

// waitLanded waits until both sinks of the child hold n events.
func waitLanded(ctx context.Context, cmd *exec.Cmd, pgDSN, chDSN string, n int, t0 time.Time) error {
	pgc, err := pgx.Connect(ctx, pgDSN)
	if err != nil {
		return err
	}
	defer pgc.Close(context.Background())
	chOpts, err := clickhouse.ParseDSN(chDSN)
	if err != nil {
		return err
	}
	chc, err := clickhouse.Open(chOpts)
	if err != nil {
		return err
	}
	defer chc.Close()
	for {
		var landedPG int64
		var landedCH uint64
		_ = pgc.QueryRow(ctx, "SELECT coalesce(sum(next_offset), 0) FROM jutong.sink_offsets").Scan(&landedPG)
		_ = chc.QueryRow(ctx, "SELECT count() FROM events").Scan(&landedCH)
		if landedPG >= int64(n) && landedCH >= uint64(n) {
			return nil
		}
		if cmd.ProcessState != nil {
			return fmt.Errorf("jutong serve exited")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(t0) > 10*time.Minute {
			return fmt.Errorf("not landed after 10 minutes (PostgreSQL %d, ClickHouse %d of %d)", landedPG, landedCH, n)
		}
	}
}

// writeBenchCatalog writes a catalog of n copies of the enterprise
// registration item (bench.item_00001, ...), with the sample's departments.
func writeBenchCatalog(dir string, n, partitions int) error {
	sample := catalog.SampleFS()
	var top map[string]any
	b, err := fs.ReadFile(sample, "catalog.json")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &top); err != nil {
		return err
	}
	top["topic_defaults"] = map[string]any{"partitions": partitions, "replication_factor": 1, "retention_ms": -1, "cleanup_policy": "delete"}
	if err := os.MkdirAll(filepath.Join(dir, "items"), 0o755); err != nil {
		return err
	}
	if b, err = json.MarshalIndent(top, "", "  "); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "catalog.json"), b, 0o644); err != nil {
		return err
	}
	var item map[string]any
	if b, err = fs.ReadFile(sample, "items/legal_person.enterprise_registration.json"); err != nil {
		return err
	}
	if err := json.Unmarshal(b, &item); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		code := fmt.Sprintf("bench.item_%05d", i)
		item["code"] = code
		if b, err = json.Marshal(item); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "items", code+".json"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
