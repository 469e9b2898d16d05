package bus_test

import (
	"context"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/door"
)

// TestDoorHandsOverWhatDecodingGives: the events the door hands to the
// pipelines (door.Config.Forwarded, so that they need not decode the
// records again) are, value for value, what decoding the forwarded records
// gives, for items of every field type.
func TestDoorHandsOverWhatDecodingGives(t *testing.T) {
	b := startBus(t, bus.Config{NoDoor: true})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	items := []string{"legal_person.enterprise_registration", "population.resident_registration", "health.vaccination", "license.business_license"}
	want := 0
	for i, code := range items {
		if cat.Item(code) == nil {
			t.Fatalf("no item %s in the sample catalog", code)
		}
		publishItem(t, b, cat, code, 40, uint64(100+i))
		want += 40
	}
	type handed struct {
		rec *kgo.Record
		ev  *schemas.Event
	}
	var mu sync.Mutex
	var got []handed
	cfg := b.DoorConfig()
	cfg.Forwarded = func(rec *kgo.Record, ev *schemas.Event) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, handed{rec, ev})
	}
	d, err := door.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = d.Run(dctx) }()
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	dec := schemas.NewDecoder(reg)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != want {
		t.Fatalf("%d events handed over, want %d", len(got), want)
	}
	for _, h := range got {
		ev, err := dec.Decode(ctx, h.rec.Value)
		if err != nil {
			t.Fatal(err)
		}
		if d := eventDiff(ev, h.ev); d != "" {
			t.Errorf("%s %s: decoding gives %s", h.rec.Topic, ev.Key, d)
		}
	}
}

// eventDiff says how two events differ ("" when they do not).
func eventDiff(a, b *schemas.Event) string {
	switch {
	case a.ID != b.ID || a.Op != b.Op || a.Key != b.Key || a.Source != b.Source:
		return "another id, op, key or source"
	case !a.EventTime.Equal(b.EventTime) || !a.PublishTime.Equal(b.PublishTime):
		return "other times"
	case len(a.Data) != len(b.Data):
		return "other fields"
	}
	for k, va := range a.Data {
		vb, ok := b.Data[k]
		if !ok {
			return "no field " + k
		}
		same := false
		switch x := va.(type) {
		case *big.Rat:
			y, isRat := vb.(*big.Rat)
			same = isRat && x.Cmp(y) == 0
		case time.Time:
			y, isTime := vb.(time.Time)
			same = isTime && x.Equal(y)
		default:
			same = va == vb
		}
		if !same {
			return "field " + k + " differs"
		}
	}
	return ""
}
