package pipeline

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/schemas"
)

// DecodeCache lets the runners of one process that read the same topics
// (the PostgreSQL and ClickHouse sinks, the grants' feeds) decode each record
// once, or not at all when the door of the same process forwarded it (it
// puts the event it decoded from the inbox): the first runner to reach a record claims it, decodes it and leaves
// the event here; the others take it, and one that reaches a record while
// another is decoding it does the rest of its batch first and takes it
// after (waiting at most waitForDecode).
//
// The trade-off: each runner keeps its own consumer group, its own ledger
// and its own pace, so a slow database never holds another sink back;
// sharing works while the runners are within the cache's size of each other
// (a runner far behind decodes for itself, as without a cache). A slot is
// taken only for the same topic, partition and offset and the same bytes,
// so a miss costs a decode and a hit can never hand the wrong event. Events
// are shared read-only: sinks must not change them.
type DecodeCache struct {
	seed  maphash.Seed
	mu    []sync.Mutex // one per shard of slots
	slots []cacheSlot
}

type cacheSlot struct {
	state     cacheState // cacheMiss: empty
	topic     string
	partition int32
	offset    int64
	raw       []byte
	ev        *schemas.Event // when cacheHit
	done      chan struct{}  // when cacheBusy: closed when decoded or given up
}

// cacheState is what take found.
type cacheState uint8

const (
	cacheMiss cacheState = iota // not there: the caller claimed it, decodes it and puts or releases it
	cacheHit                    // decoded: here it is
	cacheBusy                   // another runner is decoding it now: wait for it later
)

const cacheShards = 64

// waitForDecode bounds a wait for another runner's decoding: a decode takes
// microseconds, and a runner stuck on its registry must not hold another.
const waitForDecode = 50 * time.Millisecond

// NewDecodeCache returns a cache of about size events (rounded up to a
// multiple of 64); memory is that many decoded events at most.
func NewDecodeCache(size int) *DecodeCache {
	size = (max(size, cacheShards) + cacheShards - 1) / cacheShards * cacheShards
	return &DecodeCache{seed: maphash.MakeSeed(), mu: make([]sync.Mutex, cacheShards), slots: make([]cacheSlot, size)}
}

// lock finds kr's slot and locks its shard.
func (c *DecodeCache) lock(kr *kgo.Record) (*cacheSlot, *sync.Mutex) {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(kr.Topic)
	var pos [12]byte
	binary.LittleEndian.PutUint32(pos[:4], uint32(kr.Partition))
	binary.LittleEndian.PutUint64(pos[4:], uint64(kr.Offset))
	h.Write(pos[:])
	i := int(h.Sum64() % uint64(len(c.slots)))
	mu := &c.mu[i%cacheShards]
	mu.Lock()
	return &c.slots[i], mu
}

func (s *cacheSlot) is(kr *kgo.Record) bool {
	return s.state != cacheMiss && s.offset == kr.Offset && s.partition == kr.Partition && s.topic == kr.Topic && bytes.Equal(s.raw, kr.Value)
}

// free empties a slot; a claim of another record it held is given up (its
// waiters decode for themselves).
func (s *cacheSlot) free() {
	if s.state == cacheBusy {
		close(s.done)
	}
	*s = cacheSlot{}
}

// take returns the event decoded from kr by another runner (cacheHit), says
// that another runner is decoding it (cacheBusy), or claims it for the
// caller (cacheMiss), who then puts or releases it.
func (c *DecodeCache) take(kr *kgo.Record) (*schemas.Event, cacheState) {
	s, mu := c.lock(kr)
	defer mu.Unlock()
	if s.is(kr) {
		return s.ev, s.state
	}
	s.free()
	*s = cacheSlot{state: cacheBusy, topic: kr.Topic, partition: kr.Partition, offset: kr.Offset, raw: kr.Value, done: make(chan struct{})}
	return nil, cacheMiss
}

// wait waits for another runner to finish decoding kr; nil when it did not
// in time, or gave up: the caller decodes it then.
func (c *DecodeCache) wait(kr *kgo.Record) *schemas.Event {
	timeout := time.NewTimer(waitForDecode)
	defer timeout.Stop()
	for {
		s, mu := c.lock(kr)
		st, ev, done := s.state, s.ev, s.done
		ok := s.is(kr)
		mu.Unlock()
		switch {
		case !ok:
			return nil
		case st == cacheHit:
			return ev
		}
		select {
		case <-done:
		case <-timeout.C:
			return nil
		}
	}
}

// Put leaves the event decoded from kr for the runners (the door, which
// decoded the record before it forwarded it, does too).
func (c *DecodeCache) Put(kr *kgo.Record, ev *schemas.Event) {
	s, mu := c.lock(kr)
	defer mu.Unlock()
	s.free()
	*s = cacheSlot{state: cacheHit, topic: kr.Topic, partition: kr.Partition, offset: kr.Offset, raw: kr.Value, ev: ev}
}

// release gives up the caller's claim of kr (it could not be decoded).
func (c *DecodeCache) release(kr *kgo.Record) {
	s, mu := c.lock(kr)
	defer mu.Unlock()
	if s.is(kr) && s.state == cacheBusy {
		s.free()
	}
}
