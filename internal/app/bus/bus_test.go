package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/freeport"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		crashChild() // the pipeline process of TestPipelineSurvivesSIGKILL
		return
	}
	testenv.Main(m)
}

const item = "legal_person.enterprise_registration"

func freePorts(t *testing.T, n int) []int {
	ports, err := freeport.Take(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

func startBus(t *testing.T, cfg bus.Config) *bus.Bus {
	t.Helper()
	if cfg.Catalog == nil {
		cat, err := catalog.Sample()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Catalog = cat
	}
	if cfg.KafkaPorts == nil {
		cfg.KafkaPorts = []int{0, 0, 0}
	}
	cfg.Brokers = len(cfg.KafkaPorts)
	// The databases' principals are the whole server's (roles, users):
	// a test that wants them names a group prefix of its own.
	if cfg.GroupPrefix == "" {
		cfg.NoDatabaseRoles = true
	}
	cfg.ApplyTopics = true
	cfg.AdminUser, cfg.AdminPassword = "jutong", "test-secret"
	cfg.RegistryAddr, cfg.APIAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log = testenv.Logger(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func publisher(t *testing.T, b *bus.Bus) *producers.Publisher {
	t.Helper()
	cat, _ := catalog.Sample()
	k := b.Kafka()
	p := cat.Department("market_supervision").Principal
	pub, err := producers.New(context.Background(), cat, "market_supervision", connect.Config{Brokers: k.Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, producers.System("企业登记系统"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return pub
}

// handMade is an event with awkward values: long Chinese text, a decimal
// with all four places, a leap-day date, and absent optional fields.
func handMade() *schemas.Event {
	return &schemas.Event{
		ID: "5b0e8a52-8d0e-4d8f-9b7e-3c1f2a4d6e70", Op: schemas.OpCreate, Key: "91500000MA5U7CQ96X",
		EventTime: time.Date(2026, 11, 20, 8, 30, 15, 123e6, time.UTC),
		Data: map[string]any{
			"uscc": "91500000MA5U7CQ96X", "name": "重庆市渝中区「山城」火锅餐饮管理有限公司（分店·解放碑）",
			"legal_representative": "欧阳娜娜", "legal_representative_id": "50010319880229002X",
			"enterprise_type": "LIMITED_LIABILITY", "registered_capital": big.NewRat(12345678901, 10000),
			"currency": "CNY", "established_on": time.Date(2016, 2, 29, 0, 0, 0, 0, time.UTC),
			"status": "EXISTING", "address": "重庆市渝中区解放碑八一路177号附2号", "division_code": "500103",
			"industry_code": "H6210", "business_scope": nil, "employees": int64(88),
			"approved_at": time.Date(2026, 11, 19, 23, 59, 59, 999e6, time.UTC),
		},
	}
}

// TestPublishedEqualsLanded publishes a stream of creates, updates and
// deletes and checks field by field that PostgreSQL holds each live key's
// last version and ClickHouse every event.
func TestPublishedEqualsLanded(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	pub := publisher(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	gen := synth.New(sample(t).Item(item), 7, time.Now())
	events := []*schemas.Event{handMade()}
	for i := 0; i < 3000; i++ {
		events = append(events, gen.Next())
	}
	if _, err := pub.Publish(ctx, item, events...); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	cat, _ := catalog.Sample()
	it := cat.Item(item)

	// The expected state: the last event per key, minus deletes.
	last := map[string]*schemas.Event{}
	for _, e := range events {
		last[e.Key] = e
	}
	live := 0
	for _, e := range last {
		if e.Op != schemas.OpDelete {
			live++
		}
	}
	var pgRows int
	if err := testenv.PostgresPool(t, b.PostgresDSN()).QueryRow(ctx, "SELECT count(*) FROM legal_person.enterprise_registration").Scan(&pgRows); err != nil {
		t.Fatal(err)
	}
	if pgRows != live {
		t.Fatalf("PostgreSQL has %d rows, want %d live keys", pgRows, live)
	}
	// Compare every row through the same exact rendering (decimals as
	// strings, dates as days) that ClickHouse stores.
	rows, err := testenv.PostgresPool(t, b.PostgresDSN()).Query(ctx, `SELECT uscc, (to_jsonb(t) - '_event_id' - '_op' - '_event_time' - '_publish_time' - '_landed_at' - '_partition' - '_offset')::text,
		_event_id::text, _op FROM legal_person.enterprise_registration t`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var key, id, op, doc string
		if err := rows.Scan(&key, &doc, &id, &op); err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber() // keep numeric exact
		if err := dec.Decode(&got); err != nil {
			t.Fatal(err)
		}
		e := last[key]
		if e == nil || e.Op == schemas.OpDelete {
			t.Fatalf("PostgreSQL holds %s, which is deleted or was never published", key)
		}
		if id != e.ID || op != string(e.Op) {
			t.Errorf("%s: event %s/%s, want %s/%s", key, id, op, e.ID, e.Op)
		}
		for _, f := range it.Fields {
			want := schemas.PortableValue(f, e.Data[f.Name])
			if !samePG(f, got[f.Name], want) {
				t.Errorf("%s field %s: PostgreSQL has %v (%T), published %v", key, f.Name, got[f.Name], got[f.Name], want)
			}
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != live {
		t.Fatalf("scanned %d rows, want %d", seen, live)
	}

	// ClickHouse: every event, once, with its data.
	var chCount uint64
	if err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).QueryRow(ctx, "SELECT count() FROM events").Scan(&chCount); err != nil {
		t.Fatal(err)
	}
	if int(chCount) != len(events) {
		t.Fatalf("ClickHouse has %d events, want %d", chCount, len(events))
	}
	byID := map[string]*schemas.Event{}
	for _, e := range events {
		byID[e.ID] = e
	}
	chRows, err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).Query(ctx, "SELECT event_id, key, toString(op), source_department, source_system, event_time_ms, publish_time_ms, data FROM events")
	if err != nil {
		t.Fatal(err)
	}
	defer chRows.Close()
	for chRows.Next() {
		var id, key, op, dept, system, data string
		var evMs, pubMs int64
		if err := chRows.Scan(&id, &key, &op, &dept, &system, &evMs, &pubMs, &data); err != nil {
			t.Fatal(err)
		}
		e := byID[id]
		if e == nil {
			t.Fatalf("ClickHouse holds unknown event %s", id)
		}
		delete(byID, id)
		// The bus stamps publish_time at its door: after the client sent it.
		if key != e.Key || op != string(e.Op) || dept != "market_supervision" || system != "企业登记系统" ||
			evMs != e.EventTime.UnixMilli() || pubMs < e.PublishTime.UnixMilli() || pubMs > time.Now().UnixMilli() {
			t.Errorf("event %s: got %s %s %s %s %d %d, published %s %s %d %d", id, key, op, dept, system, evMs, pubMs, e.Key, e.Op, e.EventTime.UnixMilli(), e.PublishTime.UnixMilli())
		}
		want, _ := schemas.JSONValues(it, e.Data)
		if data != string(want) {
			t.Errorf("event %s data:\n got %s\nwant %s", id, data, want)
		}
	}
	if len(byID) != 0 {
		t.Fatalf("%d published events missing from ClickHouse", len(byID))
	}
	// The current state in ClickHouse: the live keys, each with its last data.
	stRows, err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).Query(ctx, "SELECT key, data FROM current WHERE item = ?", item)
	if err != nil {
		t.Fatal(err)
	}
	defer stRows.Close()
	current := 0
	for stRows.Next() {
		var key, data string
		if err := stRows.Scan(&key, &data); err != nil {
			t.Fatal(err)
		}
		want, _ := schemas.JSONValues(it, last[key].Data)
		if last[key] == nil || last[key].Op == schemas.OpDelete || data != string(want) {
			t.Fatalf("current state of %s is %s, want the last published %s", key, data, want)
		}
		current++
	}
	if current != live {
		t.Fatalf("ClickHouse current state has %d keys, want %d", current, live)
	}
}

// samePG compares a value read back through to_jsonb with the published one
// in its portable form.
func samePG(f *catalog.Field, got, want any) bool {
	switch f.Type {
	case catalog.TypeDecimal:
		// to_jsonb renders numeric(18,4) with its scale: 1234567.8901
		g, ok := new(big.Rat).SetString(fmt.Sprint(got.(json.Number)))
		w, _ := new(big.Rat).SetString(want.(string))
		return ok && g.Cmp(w) == 0
	case catalog.TypeTimestamp:
		if want == nil {
			return got == nil
		}
		g, err := time.Parse(time.RFC3339Nano, got.(string))
		w, _ := time.Parse(time.RFC3339Nano, want.(string))
		return err == nil && g.Equal(w)
	case catalog.TypeLong:
		if want == nil {
			return got == nil
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	case catalog.TypeDate:
		return got == want // to_jsonb renders a date as YYYY-MM-DD
	}
	return got == want
}

// TestRestartKeepsRecords stops the bus and starts it again on the same data
// directory: every record, the registered schema, and the sinks' ledgers
// survive, and nothing is written twice.
func TestRestartKeepsRecords(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	dir := t.TempDir()
	ports := freePorts(t, 3)
	cfg := bus.Config{DataDir: dir, KafkaPorts: ports, PostgresDSN: pgDSN, ClickHouseDSN: chDSN}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	gen := synth.New(sample(t).Item(item), 11, time.Now())
	publish := func(b *bus.Bus, n int) {
		pub := publisher(t, b)
		var evs []*schemas.Event
		for i := 0; i < n; i++ {
			evs = append(evs, gen.Next())
		}
		if _, err := pub.Publish(ctx, item, evs...); err != nil {
			t.Fatal(err)
		}
		pub.Close()
		if err := b.WaitCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b := startBus(t, cfg)
	publish(b, 500)
	b.Close(context.Background())

	b = startBus(t, cfg)
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if subs := b.Registry.Subjects(); len(subs) != 2*len(sample(t).Items) || !slices.Contains(subs, item+"-value") || !slices.Contains(subs, topicname.Flags(item)+"-value") { // items and their flags
		t.Fatalf("registry after restart has subjects %v", subs)
	}
	// Every record is still in the topic.
	k := b.Kafka()
	cl, err := k.Client(kgo.ConsumeTopics(item), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for n < 500 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		n += fs.NumRecords()
	}
	if n != 500 {
		t.Fatalf("read %d records after restart, want 500", n)
	}
	publish(b, 200)
	var chCount uint64
	if err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).QueryRow(ctx, "SELECT count() FROM events").Scan(&chCount); err != nil {
		t.Fatal(err)
	}
	if chCount != 700 {
		t.Fatalf("ClickHouse has %d events after restart, want 700 (none lost, none twice)", chCount)
	}
	var pgRows int
	if err := testenv.PostgresPool(t, b.PostgresDSN()).QueryRow(ctx, "SELECT count(*) FROM legal_person.enterprise_registration").Scan(&pgRows); err != nil {
		t.Fatal(err)
	}
	if pgRows != gen.Live() {
		t.Fatalf("PostgreSQL has %d rows, want %d live keys", pgRows, gen.Live())
	}
}

// TestUndecodableRecordIsDeadLettered: a record that is not a framed change
// event goes to the dead-letter topic with its origin and error, once per
// sink, and the partition moves on to the valid events behind it.
func TestUndecodableRecordIsDeadLettered(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := b.Kafka()
	raw, err := k.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	key := "915001036ULNW5W4PD"
	// Same key as a valid event below, so both land in the same partition.
	if err := raw.ProduceSync(ctx, &kgo.Record{Topic: item, Key: []byte(key), Value: []byte("not avro")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ev := handMade()
	ev.Key, ev.Data["uscc"] = key, key
	if _, err := publisher(t, b).Publish(ctx, item, ev); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).QueryRow(ctx, "SELECT count() FROM events").Scan(&n); err != nil || n != 1 {
		t.Fatalf("ClickHouse has %d events (%v), want the 1 valid one", n, err)
	}
	var rows int
	if err := testenv.PostgresPool(t, b.PostgresDSN()).QueryRow(ctx, "SELECT count(*) FROM legal_person.enterprise_registration").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("PostgreSQL has %d rows (%v), want 1", rows, err)
	}
	dl, err := k.Client(kgo.ConsumeTopics(pipeline.DeadLetterTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	sinks := map[string]bool{}
	for len(sinks) < 2 {
		fs := dl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if string(r.Value) != "not avro" || h["jutong.origin.topic"] != item || h["jutong.origin.offset"] != "0" ||
				!strings.Contains(h["jutong.error"], "not a Confluent-framed record") {
				t.Fatalf("dead letter %q with headers %v", r.Value, h)
			}
			sinks[h["jutong.sink"]] = true
		})
	}
	if !sinks["postgres"] || !sinks["clickhouse"] {
		t.Fatalf("dead letters from sinks %v, want postgres and clickhouse", sinks)
	}
}

func sample(t *testing.T) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// TestExternalRegistry: pipelines work against a registry they do not serve
// (here another Jutong's, standing in for a Confluent registry), and against
// a Kafka cluster they did not start.
func TestExternalRegistry(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	first := startBus(t, bus.Config{}) // cluster + registry, no sinks
	t.Cleanup(func() { _ = first.Close(context.Background()) })
	k := first.Kafka()
	second, err := bus.Start(context.Background(), bus.Config{Catalog: sample(t), Kafka: &k, RegistryURL: first.RegistryURL(), APIAddr: "127.0.0.1:0",
		SecretsDir:  t.TempDir(), // its own secrets: it must not touch the first bus's users
		PostgresDSN: pgDSN, ClickHouseDSN: chDSN, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close(context.Background()) })
	if second.Registry != nil || second.RegistryURL() != first.RegistryURL() {
		t.Fatal("the second bus serves a registry of its own")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gen := synth.New(sample(t).Item(item), 9, time.Now())
	var evs []*schemas.Event
	for i := 0; i < 300; i++ {
		evs = append(evs, gen.Next())
	}
	if _, err := publisher(t, first).Publish(ctx, item, evs...); err != nil {
		t.Fatal(err)
	}
	if err := second.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := testenv.ClickHouseConn(t, second.ClickHouseDSN()).QueryRow(ctx, "SELECT count() FROM events").Scan(&n); err != nil || n != 300 {
		t.Fatalf("ClickHouse has %d events (%v), want 300", n, err)
	}
}

// TestThemeDatabases: the theme databases' views are kept current by the
// pipeline like the base databases.
func TestThemeDatabases(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	publishAll := func(code string, n int) int {
		it := cat.Item(code)
		p := cat.Department(it.Source).Principal
		pub, err := producers.New(ctx, cat, it.Source, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		g := synth.New(it, 77, time.Now())
		evs := make([]*schemas.Event, n)
		for i := range evs {
			evs[i] = g.Next()
		}
		if _, err := pub.Publish(ctx, code, evs...); err != nil {
			t.Fatal(err)
		}
		return g.Live()
	}
	live := publishAll("legal_person.enterprise_registration", 300)
	publishAll("population.resident_registration", 200)
	publishAll("health.vaccination", 200)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	for q, want := range map[string]int{
		"SELECT count(*) FROM theme_financing.enterprise_credit_profile":            live,
		"SELECT count(*) FROM theme_financing.legal_person_enterprise_registration": live,
		"SELECT count(*) FROM theme_business_environment.district_licensing":        -1, // some rows
		"SELECT count(*) FROM theme_epidemic.vaccination_coverage":                  -1,
		"SELECT count(*) FROM health.vaccination":                                   -1,
	} {
		if err := testenv.PostgresPool(t, b.PostgresDSN()).QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if (want >= 0 && n != want) || (want < 0 && n == 0) {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}
}

// TestPostgresOutage: PostgreSQL goes away for 30 s while events flow. The
// sink retries and catches up; nothing is dead-lettered, lost or doubled.
func TestPostgresOutage(t *testing.T) {
	dsn := testenv.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("needs a URL-form DSN to put a proxy in front of it: %q", dsn)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	b := startBus(t, bus.Config{PostgresDSN: u.String(), Pipeline: pipeline.Config{RetryMax: 2 * time.Second, LagEvery: 500 * time.Millisecond}})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pub := publisher(t, b)
	gen := synth.New(sample(t).Item(item), 31, time.Now())
	publish := func(n int) {
		evs := make([]*schemas.Event, n)
		for i := range evs {
			evs[i] = gen.Next()
		}
		if _, err := pub.Publish(ctx, item, evs...); err != nil {
			t.Fatal(err)
		}
	}
	publish(2000)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	proxy.Block()
	down := time.Now()
	for time.Since(down) < 30*time.Second { // events keep coming while it is down
		publish(1000)
		time.Sleep(2 * time.Second)
	}
	// The outage shows: the ledger cannot be read, the sink says it is failing.
	if _, err := b.Lag(ctx); err == nil {
		t.Error("the sink's lag could be computed with its database down")
	}
	if v := gauge(t, b, "jutong_sink_failing", "postgres"); v != 1 {
		t.Errorf("jutong_sink_failing{sink=postgres} = %v while PostgreSQL is down", v)
	}
	// The lag grows with the records waiting, though no fetch happens (the
	// batch is held): about 15,000 were published while it was down.
	if v := gauge(t, b, "jutong_sink_lag_records", "postgres"); v < 10000 {
		t.Errorf("jutong_sink_lag_records{sink=postgres} = %v after 30 s of outage with ~15,000 records waiting", v)
	}
	proxy.Unblock()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := testenv.PostgresPool(t, b.PostgresDSN()).QueryRow(ctx, "SELECT count(*) FROM legal_person.enterprise_registration").Scan(&rows); err != nil || rows != gen.Live() {
		t.Fatalf("PostgreSQL has %d rows (%v), want %d live keys", rows, err, gen.Live())
	}
	dl, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	ends, err := kadm.NewClient(dl).ListEndOffsets(ctx, pipeline.DeadLetterTopic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset != 0 {
			t.Errorf("dead-letter partition %d has %d records: an outage is not a record fault", o.Partition, o.Offset)
		}
	})
	if v := gauge(t, b, "jutong_sink_failing", "postgres"); v != 0 {
		t.Errorf("jutong_sink_failing{sink=postgres} = %v after it recovered", v)
	}
}

// gauge reads a sink-labelled gauge from the bus's registry.
func gauge(t *testing.T, b *bus.Bus, name, sink string) float64 {
	t.Helper()
	mfs, err := b.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "sink" && l.GetValue() == sink {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// TestGroupPrefix: a bus given its own group prefix runs its sinks and its
// door under it (a second deployment on the same cluster would not share
// their groups), and a prefix inside a department's groups is refused.
func TestGroupPrefix(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, GroupPrefix: "jutong.dc2."})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	publishItem(t, b, cat, item, 20, 61)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	groups, err := kadm.NewClient(cl).ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := groups.Groups()
	for _, want := range []string{"jutong.dc2.sink.postgres", "jutong.dc2.door"} {
		if !slices.Contains(names, want) {
			t.Errorf("no group %s among %v", want, names)
		}
	}
	for _, g := range names {
		if strings.HasPrefix(g, "jutong.sink.") || g == "jutong.door" {
			t.Errorf("group %s is outside the prefix", g)
		}
	}
	bad := bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, AdminUser: "jutong", AdminPassword: "pw", GroupPrefix: "tax.jutong.",
		RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0"}
	if b2, err := bus.Start(ctx, bad); err == nil || !strings.Contains(err.Error(), "inside department tax") {
		if b2 != nil {
			b2.Close(context.Background())
		}
		t.Errorf("a prefix inside tax's groups: %v", err)
	}
}
