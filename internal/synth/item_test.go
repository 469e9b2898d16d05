package synth

import (
	"testing"
	"time"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/schemas"
)

// TestEveryItemPassesTheDoor: what the synthetic departments publish is
// valid for every catalog item, and the stream has creates, updates, deletes.
func TestEveryItemPassesTheDoor(t *testing.T) {
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			t.Fatal(err)
		}
		g := New(it, 1, now)
		ops := map[schemas.Op]int{}
		for i := 0; i < 2000; i++ {
			e := g.Next()
			e.PublishTime = now
			if v := rules.Check(it, it.Source, e, now.Add(time.Second)); v != nil {
				t.Fatalf("%s: generated event refused: %v", it.Code, v)
			}
			if _, err := s.Encode(e); err != nil {
				t.Fatalf("%s: %v", it.Code, err)
			}
			ops[e.Op]++
		}
		if ops[schemas.OpCreate] == 0 || ops[schemas.OpUpdate] == 0 || ops[schemas.OpDelete] == 0 {
			t.Errorf("%s: ops %v", it.Code, ops)
		}
	}
}

// TestCorruptIsRefused: every corrupted event is refused at the door.
func TestCorruptIsRefused(t *testing.T) {
	cat, _ := catalog.Sample()
	for _, it := range cat.Items {
		g := New(it, 3, time.Now())
		n := 0
		for i := 0; i < 50; i++ {
			ev := g.Next()
			bad := g.Corrupt(ev)
			if bad == nil {
				continue
			}
			n++
			bad.Source = schemas.Source{Department: it.Source, System: "s", Adapter: "sdk"}
			bad.PublishTime = time.Now()
			if v := rules.Check(it, it.Source, bad, time.Now()); v == nil {
				t.Fatalf("%s: a corrupted event passed the door: %+v", it.Code, bad.Data)
			}
		}
		if n == 0 {
			t.Errorf("%s: nothing could be corrupted", it.Code)
		}
	}
}
