package bus_test

import (
	"context"
	"crypto/ed25519"
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

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/audit"
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
	k := kafkaconn.Config{Brokers: strings.Split(os.Getenv(envBrokers), ","), User: "jutong", Password: "test-secret"}
	kopts, err := k.Opts()
	if err != nil {
		fail(err)
	}
	cfg := pipeline.Config{
		Kafka:    kopts,
		Registry: k.RegistryOpts(os.Getenv(envRegistry)), Catalog: cat, InstanceID: "crash-child", Log: log,
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
		chsink.RejectsTable(),
	} {
		go func() { errs <- chsink.Copy(ctx, cfg, os.Getenv(envCH), t, log) }()
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
	c := &crashRun{t: t, pgDSN: testenv.Postgres(t), chDSN: testenv.ClickHouse(t), cat: sample(t), published: map[string]int{}}
	c.b = startBus(t, bus.Config{}) // Kafka, the registry and the door only: the pipelines run in the child
	t.Cleanup(func() { _ = c.b.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t.Cleanup(c.kill)
	stop := c.killLoop()
	var wg sync.WaitGroup
	c.publish(ctx, &wg, "legal_person.enterprise_registration", total*3/4)
	c.publish(ctx, &wg, "health.vaccination", total-total*3/4)
	c.refusalsAndAudit(ctx, &wg)
	wg.Wait()
	n := stop()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("published %v while killing the pipeline process %d times", c.published, n)
	if n < 3 {
		t.Errorf("only %d kills while events flowed", n)
	}
	// The last child catches up; the test reads the sinks' own ledgers.
	want, ends := c.expected(ctx)
	c.waitLanded(ctx, ends)
	c.kill()
	c.verify(ctx, want)
}

// crashRun is one run of the crash test: the bus, the databases, the child
// running the pipelines, and what was published.
type crashRun struct {
	t            *testing.T
	b            *bus.Bus
	cat          *catalog.Catalog
	pgDSN, chDSN string

	mu        sync.Mutex
	child     *exec.Cmd
	published map[string]int // events by item
}

// startChild starts the pipelines' process.
func (c *crashRun) startChild() {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envBrokers+"="+strings.Join(c.b.Kafka().Brokers, ","),
		envRegistry+"="+c.b.RegistryURL(), envPG+"="+c.pgDSN, envCH+"="+c.chDSN)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		c.t.Error(err)
		return
	}
	c.mu.Lock()
	c.child = cmd
	c.mu.Unlock()
}

// kill kills the child with SIGKILL.
func (c *crashRun) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.child != nil {
		_ = c.child.Process.Signal(syscall.SIGKILL)
		_ = c.child.Wait()
		c.child = nil
	}
}

// killLoop starts the child and kills it at random moments until stop,
// which starts it once more (to catch up) and returns the number of kills.
func (c *crashRun) killLoop() (stop func() int) {
	done := make(chan struct{})
	n := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
		for {
			c.startChild()
			select {
			case <-done:
				return
			case <-time.After(time.Duration(300+rng.IntN(2200)) * time.Millisecond):
			}
			c.kill()
			n++
		}
	})
	return func() int { close(done); wg.Wait(); return n }
}

// publisher is the item's source department's publisher.
func (c *crashRun) publisher(ctx context.Context, it *catalog.Item) *producers.Publisher {
	p := c.cat.Department(it.Source).Principal
	pub, err := producers.New(ctx, c.cat, it.Source, connect.Config{Brokers: c.b.Kafka().Brokers, User: p, Password: c.b.Credentials[p], Registry: c.b.RegistryURL()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(pub.Close)
	return pub
}

// publish publishes n events of code, paced so that the kills land while
// events flow.
func (c *crashRun) publish(ctx context.Context, wg *sync.WaitGroup, code string, n int) {
	it := c.cat.Item(code)
	pub := c.publisher(ctx, it)
	wg.Go(func() {
		g := synth.New(it, 99, time.Now())
		const chunk = 2000
		for sent := 0; sent < n; sent += chunk {
			evs := make([]*schemas.Event, min(chunk, n-sent))
			for i := range evs {
				evs[i] = g.Next()
			}
			res, err := pub.Publish(ctx, code, evs...)
			if err != nil {
				c.t.Error(err)
				return
			}
			c.mu.Lock()
			c.published[code] += len(res)
			c.mu.Unlock()
			time.Sleep(120 * time.Millisecond)
		}
	})
}

// refusalsAndAudit sends refused records and audit events, while the copies
// are being killed.
func (c *crashRun) refusalsAndAudit(ctx context.Context, wg *sync.WaitGroup) {
	it := c.cat.Item("legal_person.enterprise_registration")
	pub := c.publisher(ctx, it)
	_, key, _ := ed25519.GenerateKey(nil)
	aw, err := audit.NewWriter(c.b.KafkaOpts(), key, "crash-test")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = aw.Close(context.Background()) })
	wg.Go(func() {
		g := synth.New(it, 7, time.Now())
		for round := 0; round < 40; round++ {
			var bad []*schemas.Event
			for len(bad) < 50 {
				if ev := g.Corrupt(g.Next()); ev != nil {
					bad = append(bad, ev)
				}
			}
			if res, _ := pub.Publish(ctx, it.Code, bad...); len(res) != len(bad) {
				c.t.Errorf("publish of corrupted events: %d results", len(res))
				return
			}
			evs := make([]audit.Event, 50)
			for i := range evs {
				evs[i] = audit.Event{Kind: "crash_test", Detail: fmt.Sprintf("round %d event %d", round, i)}
			}
			if err := aw.Write(ctx, evs...); err != nil {
				c.t.Error(err)
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	})
}

// expected reads what the item topics hold once the door forwarded every
// event: each live key at the offset of its last change, and, per item, the
// sum over partitions of the offset after the last record (the door writes
// in transactions, whose markers take offsets too).
func (c *crashRun) expected(ctx context.Context) (want map[string]map[string]int64, ends map[string]int64) {
	reg, err := sr.NewClient(c.b.RegistryOpts()...)
	if err != nil {
		c.t.Fatal(err)
	}
	dec := schemas.NewDecoder(reg)
	want, ends = map[string]map[string]int64{}, map[string]int64{}
	for code, n := range c.published {
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
			live, next, count := map[string]int64{}, map[int32]int64{}, 0
			err := kafkaconn.ReadAll(ctx, c.b.KafkaOpts(), code, func(r *kgo.Record) {
				ev, err := dec.Decode(ctx, r.Value)
				if err != nil {
					c.t.Errorf("%s: %v", code, err)
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
				c.t.Fatal(err)
			}
			if count == n {
				want[code] = live
				for _, o := range next {
					ends[code] += o
				}
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s: the door forwarded %d of %d events", code, count, n)
			}
		}
	}
	return want, ends
}

// waitLanded waits until the sinks and the copies hold everything.
func (c *crashRun) waitLanded(ctx context.Context, ends map[string]int64) {
	pg, ch := testenv.PostgresPool(c.t, c.pgDSN), testenv.ClickHouseConn(c.t, c.chDSN)
	caughtUp := func() bool {
		for table, topic := range map[string]string{"rejects": quarantine.Topic, "audit": audit.Topic} {
			if chCount(ctx, c.t, ch, "SELECT count() FROM "+table) < topicSize(ctx, c.t, c.b, topic) {
				return false
			}
		}
		for code, n := range c.published {
			if got := chCount(ctx, c.t, ch, "SELECT count() FROM events WHERE item = '"+code+"'"); got < uint64(n) {
				return false
			}
			var pgN int64
			if err := pg.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM jutong.sink_offsets WHERE sink = 'postgres' AND topic = $1`, code).Scan(&pgN); err != nil {
				return false
			}
			if pgN < ends[code] {
				return false
			}
		}
		return true
	}
	for !caughtUp() {
		select {
		case <-ctx.Done():
			c.t.Fatal("the sinks did not catch up")
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// verify compares the sinks and the copies with what was published.
func (c *crashRun) verify(ctx context.Context, want map[string]map[string]int64) {
	t := c.t
	pg, ch := testenv.PostgresPool(t, c.pgDSN), testenv.ClickHouseConn(t, c.chDSN)
	for code, live := range want {
		it := c.cat.Item(code)
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
		if evs != uint64(c.published[code]) || distinct != evs {
			t.Errorf("ClickHouse %s: %d events, %d distinct positions; %d published", code, evs, distinct, c.published[code])
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
		want := topicSize(ctx, t, c.b, topic)
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
