package consumers_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

const item = "legal_person.enterprise_registration"

// TestHandlerErrorRedelivers: a failing handler stops Run; the next Run
// delivers the failed event again and then everything after it, in order.
func TestHandlerErrorRedelivers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", ApplyTopics: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k := b.Kafka()
	pub, err := producers.New(ctx, cat, "market_supervision", producers.Brokers(k.Brokers...),
		producers.SASL(k.User, k.Password), producers.Registry(b.RegistryURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	gen := synth.New(cat.Item(item), 3, time.Now())
	var events []*schemas.Event
	for i := 0; i < 200; i++ {
		events = append(events, gen.Next())
	}
	if _, err := pub.Publish(ctx, item, events...); err != nil {
		t.Fatal(err)
	}

	sub := func() *consumers.Subscriber {
		s, err := consumers.New(cat, "big_data", []string{item}, consumers.Brokers(k.Brokers...),
			consumers.SASL(k.User, k.Password), consumers.Registry(b.RegistryURL()), consumers.Group("big_data.test"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	boom := errors.New("handler failed")
	var got []string
	s := sub()
	err = s.Run(ctx, func(_ context.Context, d consumers.Delivery) error {
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
