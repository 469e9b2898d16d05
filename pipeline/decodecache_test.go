package pipeline

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/schemas"
)

func rec(topic string, p int32, off int64, v string) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: p, Offset: off, Value: []byte(v)}
}

// A decoded event is handed over only for the same topic, partition,
// offset and bytes; a slot taken by another record is a miss, not a wrong
// event; a claim is waited for, briefly; the last reader to take an event
// frees it, and nothing is kept for a reader far behind or for none.
func TestDecodeCache(t *testing.T) {
	c := NewDecodeCache(128)
	pg, ch := c.Join([]string{"item.a", "item.b"}), c.Join([]string{"item.a", "item.b"})
	a := rec("item.a", 1, 42, "payload")
	ev := &schemas.Event{ID: "e1"}
	if _, st := pg.take(a); st != cacheMiss {
		t.Fatalf("empty cache: %v", st)
	}
	if _, st := ch.take(rec("item.a", 1, 42, "payload")); st != cacheBusy {
		t.Fatalf("claimed by another: %v", st)
	}
	go func() { time.Sleep(5 * time.Millisecond); pg.put(a, ev) }()
	if got := ch.wait(rec("item.a", 1, 42, "payload")); got != ev {
		t.Fatalf("waited for the claim: %v", got)
	}
	// Both have it now: freed.
	if _, st := pg.take(a); st != cacheMiss {
		t.Errorf("an event every reader took is still kept: %v", st)
	}
	pg.release(a)
	// The door's event, for both readers: each takes it once.
	b := rec("item.b", 0, 7, "door")
	c.Put(b, ev)
	for _, r := range []*CacheReader{pg, ch} {
		if got, st := r.take(b); st != cacheHit || got != ev {
			t.Fatalf("the door's event: %v %v", got, st)
		}
	}
	if _, st := ch.take(b); st != cacheMiss {
		t.Errorf("taken by both, still kept: %v", st)
	}
	ch.release(b)
	for _, other := range []*kgo.Record{
		rec("item.b", 1, 42, "payload"),  // another topic
		rec("item.a", 2, 42, "payload"),  // another partition
		rec("item.a", 1, 43, "payload"),  // another offset
		rec("item.a", 1, 42, "payload2"), // other bytes (a topic made again)
	} {
		c.Put(other, &schemas.Event{ID: "other"})
	}
	if got, st := pg.take(rec("item.a", 1, 42, "payload")); st == cacheHit {
		t.Errorf("took %v for another record", got)
	}
	// A reader far behind is not waited for: with ch at offset 0 of a
	// partition, a record farBehind+1 past it is kept for nobody.
	ch.saw(rec("item.a", 3, 0, ""))
	pg.saw(rec("item.a", 3, 100, ""))
	far := rec("item.a", 3, c.farBehind()+1, "far")
	c.Put(far, ev)
	if _, st := ch.take(far); st != cacheMiss {
		t.Errorf("kept for a reader far behind: %v", st)
	}
	// A claim given up (the record could not be decoded): a waiter decodes
	// it itself, at once.
	bad := rec("item.a", 1, 50, "bad")
	pg.take(bad)
	go func() { time.Sleep(5 * time.Millisecond); pg.release(bad) }()
	start := time.Now()
	if got := ch.wait(bad); got != nil || time.Since(start) > waitForDecode {
		t.Errorf("a released claim: %v after %s", got, time.Since(start))
	}
	// A claim never finished: the wait is bounded.
	pg.take(rec("item.a", 1, 51, "slow"))
	if got := ch.wait(rec("item.a", 1, 51, "slow")); got != nil {
		t.Errorf("an unfinished claim: %v", got)
	}
	ch.Leave()
	if n := c.waiting(rec("item.a", 5, 1, ""), pg); n != 0 {
		t.Errorf("%d readers waiting after the other left", n)
	}
	// Many more records than slots, from concurrent readers: every hit is
	// the right event.
	var wg sync.WaitGroup
	for w := range 4 {
		r := c.Join([]string{"item.c"})
		wg.Go(func() {
			defer r.Leave()
			for off := range int64(5000) {
				kr := rec("item.c", int32(w%2), off, fmt.Sprint(off))
				want := fmt.Sprint(w%2, off)
				got, st := r.take(kr)
				if st == cacheBusy {
					got = r.wait(kr)
				}
				if got == nil {
					got = &schemas.Event{ID: want}
					r.put(kr, got)
				}
				if got.ID != want {
					t.Errorf("offset %d: got event %s", off, got.ID)
					return
				}
			}
		})
	}
	wg.Wait()
}
