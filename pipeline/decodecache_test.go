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
// offset and bytes; a slot taken by another record is a miss, not a
// wrong event; a claim is waited for, briefly.
func TestDecodeCache(t *testing.T) {
	c := NewDecodeCache(128)
	a := rec("item.a", 1, 42, "payload")
	ev := &schemas.Event{ID: "e1"}
	if _, st := c.take(a); st != cacheMiss {
		t.Fatalf("empty cache: %v", st)
	}
	if _, st := c.take(rec("item.a", 1, 42, "payload")); st != cacheBusy {
		t.Fatalf("claimed by another: %v", st)
	}
	go func() { time.Sleep(5 * time.Millisecond); c.Put(a, ev) }()
	if got := c.wait(rec("item.a", 1, 42, "payload")); got != ev {
		t.Fatalf("waited for the claim: %v", got)
	}
	if got, st := c.take(rec("item.a", 1, 42, "payload")); st != cacheHit || got != ev {
		t.Fatalf("same position and bytes: %v %v", got, st)
	}
	for _, other := range []*kgo.Record{
		rec("item.b", 1, 42, "payload"),  // another topic
		rec("item.a", 2, 42, "payload"),  // another partition
		rec("item.a", 1, 43, "payload"),  // another offset
		rec("item.a", 1, 42, "payload2"), // other bytes (a topic made again)
	} {
		if got, st := c.take(other); st != cacheMiss {
			t.Errorf("%s/%d@%d %q took %v %v", other.Topic, other.Partition, other.Offset, other.Value, got, st)
		}
		c.release(other)
	}
	// A claim given up (the record could not be decoded): a waiter decodes
	// it itself, at once.
	b := rec("item.a", 1, 50, "bad")
	c.take(b)
	go func() { time.Sleep(5 * time.Millisecond); c.release(b) }()
	start := time.Now()
	if got := c.wait(b); got != nil || time.Since(start) > waitForDecode {
		t.Errorf("a released claim: %v after %s", got, time.Since(start))
	}
	// A claim never finished: the wait is bounded.
	c.take(rec("item.a", 1, 51, "slow"))
	if got := c.wait(rec("item.a", 1, 51, "slow")); got != nil {
		t.Errorf("an unfinished claim: %v", got)
	}
	// Many more records than slots, from concurrent runners: every hit is
	// the right event.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for off := range int64(5000) {
				r := rec("item.c", int32(w%2), off, fmt.Sprint(off))
				want := fmt.Sprint(w%2, off)
				got, st := c.take(r)
				switch st {
				case cacheHit:
				case cacheBusy:
					got = c.wait(r)
				}
				if got == nil {
					got = &schemas.Event{ID: want}
					c.Put(r, got)
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
