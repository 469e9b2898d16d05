package producers_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

const item = "legal_person.enterprise_registration"

func startBus(t testing.TB) (*bus.Bus, *catalog.Catalog) {
	t.Helper()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b, cat
}

func publisherAs(t testing.TB, b *bus.Bus, cat *catalog.Catalog, dept string, reg prometheus.Registerer) *producers.Publisher {
	t.Helper()
	p := cat.Department(dept).Principal
	pub, err := producers.New(context.Background(), cat, dept, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, producers.Metrics(reg), producers.System("登记系统"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return pub
}

// readAll reads every record of topic as the superuser.
func readAll(t *testing.T, b *bus.Bus, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := b.Kafka().Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		out = append(out, fs.Records()...)
	}
	// Anything beyond want shows up within a short extra wait.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	out = append(out, cl.PollFetches(ctx2).Records()...)
	return out
}

// TestRejectsAreKept publishes valid and invalid events: every invalid one
// gets its violation, lands in the quarantine topic with its reason and is
// counted; none reaches the item's topic; every valid one does.
func TestRejectsAreKept(t *testing.T) {
	b, cat := startBus(t)
	reg := prometheus.NewRegistry()
	pub := publisherAs(t, b, cat, "market_supervision", reg)
	gen := synth.New(cat.Item(item), 1, time.Now())
	gen.UpdateEvery, gen.DeleteEvery = 0, 0
	var events []*schemas.Event
	wantRule := map[string]string{} // event id -> rule, for the invalid ones
	breakers := []struct {
		rule   string
		break_ func(e *schemas.Event)
	}{
		{"uscc.checksum", func(e *schemas.Event) {
			bad := e.Key[:17] + string("0123456789ABCDEFGHJKLMNPQRTUWXY"[(len(e.Key)+int(e.Key[17]))%31])
			if bad == e.Key {
				bad = e.Key[:17] + "Y"
			}
			e.Key, e.Data["uscc"] = bad, bad
		}},
		{"citizen_id.birth_date", func(e *schemas.Event) { e.Data["legal_representative_id"] = "500103199902300011" }},
		{"citizen_id.length", func(e *schemas.Event) { e.Data["legal_representative_id"] = "50010319990101001" }},
		{"required", func(e *schemas.Event) { delete(e.Data, "name") }},
		{"blank", func(e *schemas.Event) { e.Data["address"] = "　" }}, // an ideographic space
		{"schema.enum", func(e *schemas.Event) { e.Data["status"] = "存续" }},
		{"decimal.scale", func(e *schemas.Event) { e.Data["registered_capital"] = big.NewRat(1, 3) }},
		{"division.province", func(e *schemas.Event) { e.Data["division_code"] = "000000" }},
		{"not_future", func(e *schemas.Event) {
			e.Data["established_on"] = time.Now().AddDate(1, 0, 0).Truncate(24 * time.Hour)
		}},
	}
	for i := 0; i < 200; i++ {
		e := gen.Next()
		if i%10 == 0 {
			br := breakers[(i/10)%len(breakers)]
			br.break_(e)
			wantRule[e.ID] = br.rule
		}
		events = append(events, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, err := pub.Publish(ctx, item, events...)
	if err == nil {
		t.Fatal("Publish reported no error for the invalid events")
	}
	valid := map[string]bool{}
	for _, r := range results {
		var v *rules.Violation
		switch rule, bad := wantRule[r.Event.ID]; {
		case bad && (!errors.As(r.Err, &v) || v.Rule != rule):
			t.Errorf("event %s: got %v, want rule %s", r.Event.ID, r.Err, rule)
		case bad && (v.Item != item || v.Key != r.Event.Key || v.Field == ""):
			t.Errorf("violation does not name item, key and field: %+v", v)
		case !bad && r.Err != nil:
			t.Errorf("valid event refused: %v", r.Err)
		case !bad:
			valid[r.Event.ID] = true
		}
	}
	// The item's topic holds exactly the valid events.
	s, _ := schemas.For(cat.Item(item))
	recs := readAll(t, b, item, len(valid))
	if len(recs) != len(valid) {
		for _, r := range recs {
			_, payload, _ := schemas.Unframe(r.Value)
			if e, err := schemas.Decode(s.Avro, payload); err == nil && !valid[e.ID] {
				t.Logf("forwarded although refused (%s): %+v", wantRule[e.ID], e.Data)
			}
		}
		t.Fatalf("item topic has %d records, want %d", len(recs), len(valid))
	}
	for _, r := range recs {
		_, payload, _ := schemas.Unframe(r.Value)
		e, err := schemas.Decode(s.Avro, payload)
		if err != nil || !valid[e.ID] {
			t.Fatalf("item topic holds %v (%v), not a valid event", e, err)
		}
	}
	// The quarantine holds exactly the invalid ones, with their reasons.
	q := readAll(t, b, producers.QuarantineTopic, len(wantRule))
	if len(q) != len(wantRule) {
		t.Fatalf("quarantine has %d records, want %d", len(q), len(wantRule))
	}
	for _, r := range q {
		var rej producers.Rejected
		if err := json.Unmarshal(r.Value, &rej); err != nil {
			t.Fatal(err)
		}
		if wantRule[rej.EventID] != rej.Rule || rej.Item != item || rej.Department != "market_supervision" ||
			rej.System != "登记系统" || rej.Reason == "" || len(rej.Record) == 0 {
			t.Errorf("quarantined %+v, want rule %s", rej, wantRule[rej.EventID])
		}
	}
	// And the counters agree.
	if got := testutil.ToFloat64(mustCounter(t, reg, "jutong_published_events_total")); int(got) != len(valid) {
		t.Errorf("published counter %v, want %d", got, len(valid))
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "jutong_rejected_events_total", "rule", "schema.enum")); got != 2 {
		t.Errorf("rejected{rule=schema.enum} = %v, want 2", got)
	}
}

// TestRefusedCorrectionIsKept: a correction the contract refuses corrects
// nothing, and is kept in the quarantine like any refused event, without
// naming the dispute.
func TestRefusedCorrectionIsKept(t *testing.T) {
	b, cat := startBus(t)
	pub := publisherAs(t, b, cat, "market_supervision", nil)
	gen := synth.New(cat.Item(item), 3, time.Now())
	e := gen.Next()
	e.Data["status"] = "存续" // not in the enum
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := pub.PublishCorrection(ctx, item, "dsp-1", e)
	var v *rules.Violation
	if !errors.As(err, &v) || v.Rule != "schema.enum" || !errors.As(res.Err, &v) {
		t.Fatalf("a refused correction: %v (result %v)", err, res.Err)
	}
	q := readAll(t, b, producers.QuarantineTopic, 1)
	var rej producers.Rejected
	if len(q) != 1 || json.Unmarshal(q[0].Value, &rej) != nil || rej.EventID != e.ID || rej.Rule != "schema.enum" {
		t.Fatalf("the quarantine holds %d records (%+v), want the refused correction", len(q), rej)
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue metric
				}
			}
			total.Add(m.GetCounter().GetValue())
		}
	}
	return total
}

// TestNotTheSource: a department publishing an item it does not own is
// refused at the door (and Kafka would refuse it too, see package access).
func TestNotTheSource(t *testing.T) {
	b, cat := startBus(t)
	pub := publisherAs(t, b, cat, "tax", nil)
	e := synth.New(cat.Item(item), 2, time.Now()).Next()
	_, err := pub.Publish(context.Background(), item, e)
	var v *rules.Violation
	if !errors.As(err, &v) || v.Rule != "source.owner" {
		t.Fatalf("tax publishing %s: %v", item, err)
	}
	if q := readAll(t, b, producers.QuarantineTopic, 1); len(q) != 1 {
		t.Fatalf("quarantine has %d records, want 1", len(q))
	}
}

// TestCloseIsBounded: with the cluster gone, Close gives up after its
// CloseTimeout, and every event still buffered gets an error: none is
// reported published, none hangs its caller.
func TestCloseIsBounded(t *testing.T) {
	b, cat := startBus(t)
	p := cat.Department("market_supervision").Principal
	pub, err := producers.New(context.Background(), cat, "market_supervision", connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL(), KafkaOpts: []kgo.Opt{kgo.RecordDeliveryTimeout(time.Hour), kgo.RecordRetries(1 << 30)}}, producers.CloseTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	gen := synth.New(cat.Item(item), 4, time.Now())
	ctx := context.Background()
	if _, err := pub.Publish(ctx, item, gen.Next()); err != nil { // registers the schema
		t.Fatal(err)
	}
	b.Close(context.Background()) // the brokers are gone
	var results []producers.Result
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(5)
	evs := []*schemas.Event{gen.Next(), gen.Next(), gen.Next(), gen.Next(), gen.Next()}
	if err := pub.PublishAsync(ctx, item, func(r producers.Result) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
		wg.Done()
	}, evs...); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	pub.Close()
	wg.Wait()
	if d := time.Since(began); d > 15*time.Second {
		t.Fatalf("Close took %s with a 1s CloseTimeout", d)
	}
	for _, r := range results {
		if r.Err == nil {
			t.Fatalf("event %s reported published to a cluster that is gone", r.Event.ID)
		}
	}
}
