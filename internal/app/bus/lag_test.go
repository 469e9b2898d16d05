package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
)

// TestSinkLagReachesZero: once every sink has landed everything, each
// sink's jutong_sink_lag_records is 0, though the item topics' end offsets
// are well above their record counts: the door's transaction markers, an
// aborted transaction's records and its marker, and a compacted topic's
// removed records all take offsets that no sink writes.
func TestSinkLagReachesZero(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN,
		Pipeline: pipeline.Config{LagEvery: 300 * time.Millisecond},
		// Compact often, so that superseded versions go while the test runs.
		KafkaBrokerConfigs: map[string]string{"log.cleaner.backoff.ms": "200"}})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)

	cat := sample(t)
	const compacted = "geography.administrative_division" // cleanup_policy compact
	published := map[string]int64{}
	publish := func(code string, n int, seed uint64) {
		it := cat.Item(code)
		p := cat.Department(it.Source).Principal
		pub, err := producers.New(ctx, cat, it.Source, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, producers.System("lag test"))
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		gen := synth.New(it, seed, time.Now())
		gen.UpdateEvery = 2 // versions for compaction to supersede
		// In several publishes: several door transactions, several markers.
		for range 4 {
			evs := make([]*schemas.Event, n/4)
			for i := range evs {
				evs[i] = gen.Next()
			}
			if _, err := pub.Publish(ctx, code, evs...); err != nil {
				t.Fatal(err)
			}
			published[code] += int64(len(evs))
		}
	}
	publish(item, 800, 11)
	publish(compacted, 800, 12)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}

	// An aborted transaction on the item's topic: its records are never
	// readable, its abort marker takes an offset.
	txn, err := b.Kafka().Client(kgo.TransactionalID("lag-test-aborted"), kgo.DefaultProduceTopic(cat.Item(item).Topic()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := txn.ProduceSync(ctx, &kgo.Record{Key: []byte{byte('a' + i)}, Value: []byte("never committed")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	// Then more of the door's transactions after it, on both topics.
	publish(item, 80, 13)
	publish(compacted, 80, 14)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}

	// The test means something only if offsets do outrun records.
	records := map[string]int64{}
	for _, code := range []string{item, compacted} {
		topic := cat.Item(code).Topic()
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		var end int64
		ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
		cl, err := b.Kafka().Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for { // until a second passes with nothing more
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			fs := cl.PollFetches(rctx)
			rcancel()
			if fs.NumRecords() == 0 {
				break
			}
			n += int64(fs.NumRecords())
		}
		cl.Close()
		records[code] = n
		if end-n < 4 {
			t.Fatalf("%s: end offsets sum to %d for %d readable records: no gap to test", topic, end, n)
		}
		t.Logf("%s: end offsets sum to %d, %d records readable of %d published", topic, end, n, published[code])
	}

	if records[compacted] >= published[compacted] {
		t.Errorf("%s: %d records readable of %d published: compaction removed nothing, the test does not try it", compacted, records[compacted], published[compacted])
	}

	// Every sink's lag gauge comes to 0 and stays there.
	deadline := time.Now().Add(30 * time.Second)
	for {
		lags := lagGauges(t, b)
		if len(lags) < 2 {
			t.Fatalf("lag gauges %v: want one per sink", lags)
		}
		zero := true
		for _, v := range lags {
			zero = zero && v == 0
		}
		if zero {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jutong_sink_lag_records %v after every sink landed everything (readable records %v)", lags, records)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // a few refreshes from the topics' ends
	for sink, v := range lagGauges(t, b) {
		if v != 0 {
			t.Errorf("jutong_sink_lag_records{sink=%s} = %v on an idle bus that landed everything", sink, v)
		}
	}
}

// lagGauges reads jutong_sink_lag_records of every sink.
func lagGauges(t *testing.T, b *bus.Bus) map[string]float64 {
	t.Helper()
	mfs, err := b.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "jutong_sink_lag_records" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "sink" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// TestSubscriberLagReachesZero: a department's subscriber that has read
// and committed everything shows jutong_subscriber_lag_records 0, though
// it commits its last record's offset and the door's transaction marker
// after that record takes one more.
func TestSubscriberLagReachesZero(t *testing.T) {
	b := startBus(t, bus.Config{})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cat := sample(t)
	gen := synth.New(cat.Item(item), 21, time.Now())
	const n = 300
	for range 3 { // three door transactions
		evs := make([]*schemas.Event, n/3)
		for i := range evs {
			evs[i] = gen.Next()
		}
		if _, err := publisher(t, b).Publish(ctx, item, evs...); err != nil {
			t.Fatal(err)
		}
	}
	const dept = "civil_affairs"
	grant(t, controlClient{t, b.APIURL(), b}, cat, dept, control.Request{Item: item, Purpose: "社会组织登记核查", Grade: 4})
	p := cat.Department(dept).Principal
	sub, err := consumers.New(ctx, cat, dept, []string{item}, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, consumers.Group("lag-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Wait for the door to have forwarded all (the sinks' count is not
	// there: this bus has none), reading as the subscriber does.
	got := 0
	rctx, rcancel := context.WithCancel(ctx)
	if err := sub.Run(rctx, func(_ context.Context, d consumers.Delivery) error {
		if got++; got == n {
			rcancel()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rcancel()
	if got != n {
		t.Fatalf("the subscriber read %d of %d records", got, n)
	}
	var lag float64 = -1
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if _, err := b.AuditReads(ctx); err != nil {
			t.Fatal(err)
		}
		if lag = subscriberLag(t, b, dept, item); lag == 0 {
			break
		}
	}
	if lag != 0 {
		t.Fatalf("jutong_subscriber_lag_records{department=%s,item=%s} = %v after its group read and committed all %d records", dept, item, lag, n)
	}
}

func subscriberLag(t *testing.T, b *bus.Bus, dept, item string) float64 {
	t.Helper()
	mfs, err := b.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "jutong_subscriber_lag_records" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["department"] == dept && l["item"] == item {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}
