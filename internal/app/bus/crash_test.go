package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/audit"
	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/quarantine"
	"github.com/jutong/jutong/schemas"
)

// The crash child is this test binary run again with these variables: it
// runs the PostgreSQL and ClickHouse pipelines until it is killed.
const (
	envChild    = "JUTONG_CRASH_CHILD"
	envBrokers  = "JUTONG_CRASH_BROKERS"
	envRegistry = "JUTONG_CRASH_REGISTRY"
	envPG       = "JUTONG_CRASH_PG"
	envCH       = "JUTONG_CRASH_CH"
	// JUTONG_CRASH_EVENTS overrides how many events the crash test publishes.
	envEvents = "JUTONG_CRASH_EVENTS"
)

// crashChild runs the pipelines of both sinks, as `jutong serve` does, until
// the process is killed.
func crashChild() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fail := func(err error) {
		log.Error("crash child", "err", err)
		os.Exit(3)
	}
	ctx := context.Background()
	cat, err := catalog.Sample()
	if err != nil {
		fail(err)
	}
	pg, err := pgsink.New(ctx, pgsink.Config{Name: "postgres", DSN: os.Getenv(envPG), Themes: cat.Themes})
	if err != nil {
		fail(err)
	}
	ch, err := chsink.New(ctx, chsink.Config{Name: "clickhouse", DSN: os.Getenv(envCH)})
	if err != nil {
		fail(err)
	}
	kopts, err := kafkaconn.Config{Brokers: strings.Split(os.Getenv(envBrokers), ","), User: "jutong", Password: "test-secret"}.Opts()
	if err != nil {
		fail(err)
	}
	cfg := pipeline.Config{
		Kafka:       kopts,
		RegistryURL: os.Getenv(envRegistry), Catalog: cat, InstanceID: "crash-child", Log: log,
		MaxBatch: 5000,
	}
	if n, err := strconv.Atoi(os.Getenv("JUTONG_CRASH_BATCH")); err == nil && n > 0 {
		cfg.MaxBatch = n // larger batches widen the window of an insert in flight at the kill
	}
	errs := make(chan error, 4)
	// The ClickHouse copies of the audit trail and the quarantine, as the bus
	// runs them.
	for _, t := range []chsink.Table{
		{Topic: audit.Topic, DDL: audit.TableDDL, Insert: audit.InsertSQL, Row: audit.Row},
		chsink.RejectsTable(nil),
	} {
		go func() { errs <- chsink.Copy(ctx, kopts, os.Getenv(envCH), t, log) }()
	}
	for _, s := range []pipeline.Sink{pg, ch} {
		r, err := pipeline.New(cfg, s)
		if err != nil {
			fail(err)
		}
		go func() { errs <- r.Run(ctx) }()
	}
	fail(<-errs)
}

// TestPipelineSurvivesSIGKILL publishes 200,000 events over two items while
// the process running the pipelines is killed with SIGKILL at random moments
// and started again. Afterwards PostgreSQL (base and theme databases) and
// ClickHouse (history and current state) hold exactly what was published:
// every live key at its last change, no row lost, none doubled. The same
// process copies the audit trail and the quarantine into ClickHouse while
// both grow: each of their records is in its table exactly once.
func TestPipelineSurvivesSIGKILL(t *testing.T) {
	total := 200_000
	if v, err := strconv.Atoi(os.Getenv(envEvents)); err == nil && v > 0 {
		total = v
	}
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{}) // Kafka and the registry only: the pipelines run in the child
	t.Cleanup(b.Close)
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The child, started and killed in a loop until stop is closed; then
	// started once more to catch up.
	var mu sync.Mutex
	var child *exec.Cmd
	start := func() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=1", envBrokers+"="+strings.Join(b.Kafka().Brokers, ","),
			envRegistry+"="+b.RegistryURL(), envPG+"="+pgDSN, envCH+"="+chDSN)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		child = cmd
		mu.Unlock()
	}
	kill := func() {
		mu.Lock()
		defer mu.Unlock()
		if child != nil {
			_ = child.Process.Signal(syscall.SIGKILL)
			_ = child.Wait()
			child = nil
		}
	}
	t.Cleanup(kill)
	stop := make(chan struct{})
	kills := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		for {
			start()
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(300+rng.IntN(2200)) * time.Millisecond):
			}
			kill()
			kills++
		}
	})

	// Publish, paced so that the kills land while events flow.
	type item struct {
		code string
		n    int
	}
	want := map[string]map[string]int64{} // item -> live key -> offset of its last change
	published := map[string]int{}
	var pubWG sync.WaitGroup
	var pubMu sync.Mutex
	for _, spec := range []item{{"legal_person.enterprise_registration", total * 3 / 4}, {"health.vaccination", total - total*3/4}} {
		it := cat.Item(spec.code)
		p := cat.Department(it.Source).Principal
		pub, err := producers.New(ctx, cat, it.Source, producers.Brokers(b.Kafka().Brokers...),
			producers.SASL(p, b.Credentials[p]), producers.Registry(b.RegistryURL()))
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		want[spec.code] = map[string]int64{}
		pubWG.Go(func() {
			g := synth.New(it, 99, time.Now())
			const chunk = 2000
			for sent := 0; sent < spec.n; sent += chunk {
				evs := make([]*schemas.Event, min(chunk, spec.n-sent))
				for i := range evs {
					evs[i] = g.Next()
				}
				res, err := pub.Publish(ctx, spec.code, evs...)
				if err != nil {
					t.Error(err)
					return
				}
				pubMu.Lock()
				published[spec.code] += len(res)
				pubMu.Unlock()
				time.Sleep(120 * time.Millisecond)
			}
		})
	}
	// Refused records and audit events, while the copies are being killed.
	pubWG.Go(func() {
		it := cat.Item("legal_person.enterprise_registration")
		p := cat.Department(it.Source).Principal
		pub, err := producers.New(ctx, cat, it.Source, producers.Brokers(b.Kafka().Brokers...),
			producers.SASL(p, b.Credentials[p]), producers.Registry(b.RegistryURL()))
		if err != nil {
			t.Error(err)
			return
		}
		defer pub.Close()
		aw, err := audit.NewWriter(b.KafkaOpts())
		if err != nil {
			t.Error(err)
			return
		}
		defer aw.Close()
		g := synth.New(it, 7, time.Now())
		for round := 0; round < 40; round++ {
			var bad []*schemas.Event
			for len(bad) < 50 {
				if ev := g.Corrupt(g.Next()); ev != nil {
					bad = append(bad, ev)
				}
			}
			if res, _ := pub.Publish(ctx, it.Code, bad...); len(res) != len(bad) {
				t.Errorf("publish of corrupted events: %d results", len(res))
				return
			}
			evs := make([]audit.Event, 50)
			for i := range evs {
				evs[i] = audit.Event{Kind: "crash_test", Detail: fmt.Sprintf("round %d event %d", round, i)}
			}
			if err := aw.Write(ctx, evs...); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	})
	pubWG.Wait()
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("published %v while killing the pipeline process %d times", published, kills)
	if kills < 3 {
		t.Errorf("only %d kills while events flowed", kills)
	}

	// The last child catches up; the test reads the sinks' own ledgers.
	pg, ch := testenv.PostgresPool(t, pgDSN), testenv.ClickHouseConn(t, chDSN)
	lastOffsets := map[string]int64{} // item -> sum over partitions of (last record offset + 1)
	caughtUp := func() bool {
		for table, topic := range map[string]string{"rejects": quarantine.Topic, "audit": audit.Topic} {
			if chCount(ctx, t, ch, "SELECT count() FROM "+table) < topicSize(ctx, t, b, topic) {
				return false
			}
		}
		for code, n := range published {
			if got := chCount(ctx, t, ch, "SELECT count() FROM events WHERE item = '"+code+"'"); got < uint64(n) {
				return false
			}
			// The door writes the item topics in transactions: their
			// markers take offsets too, so the ledger is compared with the
			// offset after the topic's last record.
			var pgN int64
			if err := pg.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM jutong.sink_offsets WHERE sink = 'postgres' AND topic = $1`, code).Scan(&pgN); err != nil {
				return false
			}
			if pgN < lastOffsets[code] {
				return false
			}
		}
		return true
	}
	// What the item topics hold once the door forwarded every event: each
	// live key at the offset of its last change.
	reg, err := sr.NewClient(sr.URLs(b.RegistryURL()))
	if err != nil {
		t.Fatal(err)
	}
	dec := schemas.NewDecoder(reg)
	for code, n := range published {
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
			live, next, count := map[string]int64{}, map[int32]int64{}, 0
			err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), code, func(r *kgo.Record) {
				ev, err := dec.Decode(ctx, r.Value)
				if err != nil {
					t.Errorf("%s: %v", code, err)
					return
				}
				count++
				next[r.Partition] = r.Offset + 1
				if ev.Op == schemas.OpDelete {
					delete(live, ev.Key)
				} else {
					live[ev.Key] = r.Offset
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if count == n {
				want[code] = live
				for _, o := range next {
					lastOffsets[code] += o
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the door forwarded %d of %d events", code, count, n)
			}
		}
	}
	for !caughtUp() {
		select {
		case <-ctx.Done():
			t.Fatal("the sinks did not catch up")
		case <-time.After(500 * time.Millisecond):
		}
	}
	kill()

	for code, live := range want {
		it := cat.Item(code)
		d, n := it.Namespace()
		// PostgreSQL: each live key at its last change, nothing else.
		rows, err := pg.Query(ctx, fmt.Sprintf(`SELECT %q, _offset FROM %q.%q`, it.Key, d, n))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for rows.Next() {
			var k string
			var off int64
			if err := rows.Scan(&k, &off); err != nil {
				t.Fatal(err)
			}
			got[k] = off
		}
		rows.Close()
		compareState(t, "PostgreSQL "+code, got, live)

		// ClickHouse: every event exactly once, and the same current state.
		evs := chCount(ctx, t, ch, "SELECT count() FROM events WHERE item = '"+code+"'")
		distinct := chCount(ctx, t, ch, "SELECT uniqExact(kafka_partition, kafka_offset) FROM events WHERE item = '"+code+"'")
		if evs != uint64(published[code]) || distinct != evs {
			t.Errorf("ClickHouse %s: %d events, %d distinct positions; %d published", code, evs, distinct, published[code])
		}
		crows, err := ch.Query(ctx, "SELECT key, version FROM current_state FINAL WHERE item = ? AND deleted = 0", code)
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]int64{}
		for crows.Next() {
			var k string
			var v int64
			if err := crows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			got[k] = v
		}
		crows.Close()
		compareState(t, "ClickHouse "+code, got, live)
	}
	// The copies: every record of the topic once in its table.
	for table, topic := range map[string]string{"rejects": quarantine.Topic, "audit": audit.Topic} {
		want := topicSize(ctx, t, b, topic)
		rows := chCount(ctx, t, ch, "SELECT count() FROM "+table)
		distinct := chCount(ctx, t, ch, "SELECT uniqExact(kafka_partition, kafka_offset) FROM "+table)
		if rows != want || distinct != want {
			t.Errorf("ClickHouse %s: %d rows, %d distinct positions; the topic holds %d records", table, rows, distinct, want)
		}
	}
	// The theme database reads the same rows.
	var themeRows int
	if err := pg.QueryRow(ctx, "SELECT count(*) FROM theme_epidemic.health_vaccination").Scan(&themeRows); err != nil || themeRows != len(want["health.vaccination"]) {
		t.Errorf("theme_epidemic.health_vaccination: %d rows (%v), want %d", themeRows, err, len(want["health.vaccination"]))
	}
}

func compareState(t *testing.T, what string, got, want map[string]int64) {
	t.Helper()
	bad := 0
	for k, off := range want {
		if g, ok := got[k]; !ok || g != off {
			if bad++; bad <= 5 {
				t.Errorf("%s: key %s at offset %d (present %v), want %d", what, k, g, ok, off)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if bad++; bad <= 5 {
				t.Errorf("%s: key %s present but deleted or never published", what, k)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d keys differ (of %d live, %d held)", what, bad, len(want), len(got))
	}
}

func chCount(ctx context.Context, t *testing.T, ch driver.Conn, q string) uint64 {
	t.Helper()
	var n uint64
	if err := ch.QueryRow(ctx, q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// topicSize is the number of records in a topic (read committed: the
// door writes the quarantine in transactions, whose markers take offsets).
func topicSize(ctx context.Context, t *testing.T, b *bus.Bus, topic string) uint64 {
	t.Helper()
	var n uint64
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topic, func(*kgo.Record) { n++ }); err != nil {
		t.Fatal(err)
	}
	return n
}
