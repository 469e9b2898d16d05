package consumers_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

const item = "legal_person.enterprise_registration"

// start runs a bus (no sinks) and a publisher of market supervision's items.
func start(ctx context.Context, t *testing.T) (*bus.Bus, *catalog.Catalog, *producers.Publisher) {
	t.Helper()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", ApplyTopics: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	k := b.Kafka()
	pub, err := producers.New(ctx, cat, "market_supervision", connect.Config{Brokers: k.Brokers, User: k.User, Password: k.Password, Registry: b.RegistryURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return b, cat, pub
}

// TestHandlerErrorRedelivers: a failing handler stops Run; the next Run
// delivers the failed event again and then everything after it, in order.
func TestHandlerErrorRedelivers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, cat, pub := start(ctx, t)
	k := b.Kafka()
	gen := synth.New(cat.Item(item), 3, time.Now())
	var events []*schemas.Event
	for i := 0; i < 200; i++ {
		events = append(events, gen.Next())
	}
	if _, err := pub.Publish(ctx, item, events...); err != nil {
		t.Fatal(err)
	}

	sub := func() *consumers.Subscriber {
		s, err := consumers.New(ctx, cat, "big_data", []string{item}, connect.Config{Brokers: k.Brokers, User: k.User, Password: k.Password, Registry: b.RegistryURL()}, consumers.Group("big_data.test"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	boom := errors.New("handler failed")
	var got []string
	s := sub()
	err := s.Run(ctx, func(_ context.Context, d consumers.Delivery) error {
		if len(got) == 120 {
			return boom
		}
		got = append(got, d.Event.ID)
		return nil
	})
	s.Close()
	if !errors.Is(err, boom) {
		t.Fatalf("Run returned %v, want the handler's error", err)
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	s = sub()
	defer s.Close()
	rctx, rcancel := context.WithCancel(ctx)
	err = s.Run(rctx, func(_ context.Context, d consumers.Delivery) error {
		seen[d.Event.ID]++
		if len(seen) == len(events) {
			rcancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if seen[e.ID] == 0 {
			t.Fatalf("event %s (%s %s) never delivered", e.ID, e.Op, e.Key)
		}
	}
	// Each partition's deliveries after the restart start at its last
	// commit, so nothing but the uncommitted tail may come twice.
	twice := 0
	for _, n := range seen {
		if n > 1 {
			twice++
		}
	}
	if twice > len(events)-120 {
		t.Fatalf("%d events delivered twice: more than the uncommitted tail", twice)
	}
}

// TestGarbageRecordIsSkipped: a topic holding a record that is no framed
// Avro, and one naming a schema id the registry does not know, does not stop
// the subscriber: each goes to OnUndecodable (and the metric), every event
// around them is delivered, in order, and a restart does not see them again.
func TestGarbageRecordIsSkipped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, cat, pub := start(ctx, t)
	k := b.Kafka()
	gen := synth.New(cat.Item(item), 5, time.Now())
	var want []string
	publish := func(n int) {
		for i := 0; i < n; i++ {
			ev := gen.Next()
			ev.Key = "91500000MA5U7CQ96X" // one key: one partition, so the order is total
			if ev.Data != nil {
				ev.Data["uscc"] = ev.Key
			}
			if _, err := pub.Publish(ctx, item, ev); err != nil {
				t.Fatal(err)
			}
			want = append(want, ev.ID)
		}
	}
	raw, err := k.Client(kgo.DefaultProduceTopic(item))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	publish(10)
	for _, v := range [][]byte{[]byte("not avro at all"), {0, 0, 0, 0x7f, 0xff, 1, 2, 3}} {
		if err := raw.ProduceSync(ctx, &kgo.Record{Key: []byte("91500000MA5U7CQ96X"), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	publish(10)

	reg := prometheus.NewRegistry()
	var bad []consumers.Undecodable
	sub := func() *consumers.Subscriber {
		s, err := consumers.New(ctx, cat, "big_data", []string{item}, connect.Config{Brokers: k.Brokers, User: k.User, Password: k.Password, Registry: b.RegistryURL()}, consumers.Group("big_data.garbage"), consumers.Metrics(reg), consumers.OnUndecodable(func(_ context.Context, u consumers.Undecodable) error {
			bad = append(bad, u)
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := sub()
	var got []string
	rctx, rcancel := context.WithCancel(ctx)
	err = s.Run(rctx, func(_ context.Context, d consumers.Delivery) error {
		got = append(got, d.Event.ID)
		if len(got) == len(want) {
			rcancel()
		}
		return nil
	})
	s.Close()
	if err != nil {
		t.Fatalf("Run stopped: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %d events, want the %d published in order", len(got), len(want))
	}
	if len(bad) != 2 || bad[0].Offset >= bad[1].Offset || bad[0].Item.Code != item {
		t.Fatalf("OnUndecodable got %+v, want the two bad records", bad)
	}
	if n := testutil.ToFloat64(mustCounter(t, reg, "jutong_subscriber_undecodable_total")); n != 2 {
		t.Fatalf("jutong_subscriber_undecodable_total = %v, want 2", n)
	}
	// A new run of the same group starts after them.
	publish(1)
	s = sub()
	defer s.Close()
	rctx, rcancel = context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	var again []string
	_ = s.Run(rctx, func(_ context.Context, d consumers.Delivery) error {
		again = append(again, d.Event.ID)
		rcancel()
		return nil
	})
	if len(again) != 1 || again[0] != want[len(want)-1] || len(bad) != 2 {
		t.Fatalf("after a restart: %v delivered, %d undecodable seen", again, len(bad))
	}
}

// mustCounter finds a registered counter family's only series.
func mustCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var total float64
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
			c.Add(total)
			return c
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
