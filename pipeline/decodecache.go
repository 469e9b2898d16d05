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
// puts the event it decoded from the inbox). The first runner to reach a
// record claims it, decodes it and leaves the event for the runners that
// have yet to read it; the last of them to take it frees it. A runner that
// reaches a record while another is decoding it does the rest of its batch
// first and takes it after (waiting at most waitForDecode).
//
// Whether it pays depends on the readers: with two sinks it measured even
// with decoding (docs/design.md, "Decoding once"), so the bus leaves it off
// unless asked (--decode-cache).
//
// The trade-off: each runner keeps its own consumer group, its own ledger
// and its own pace, so a slow database never holds another sink back. An
// event is kept only for the runners within farBehind records of it (a
// runner farther behind decodes for itself when it gets there), and only
// until they took it: events kept long cost the garbage collector more than
// decoding them again (docs/benchmarks.md). A slot is taken only for the same
// topic, partition and offset and the same bytes, so a miss costs a decode
// and a hit can never hand the wrong event. Events are shared read-only:
// sinks must not change them.
type DecodeCache struct {
	seed  maphash.Seed
	mu    []sync.Mutex // one per shard of slots
	slots []cacheSlot

	rmu     sync.Mutex
	readers map[string][]*CacheReader // by topic
}

// CacheReader is one runner's membership in a DecodeCache: the topics it
// reads and how far it has read them.
type CacheReader struct {
	c      *DecodeCache
	topics []string
	mu     sync.Mutex
	pos    map[tp]int64 // the last offset it took or decoded, per partition
}

type cacheSlot struct {
	state     cacheState // cacheMiss: empty
	topic     string
	partition int32
	offset    int64
	raw       []byte
	ev        *schemas.Event // when cacheHit
	left      int            // when cacheHit: the readers yet to take it
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
	return &DecodeCache{seed: maphash.MakeSeed(), mu: make([]sync.Mutex, cacheShards), slots: make([]cacheSlot, size),
		readers: map[string][]*CacheReader{}}
}

// farBehind is how far behind a record (in offsets of its partition) a
// reader may be for the record to be kept for it: an eighth of the slots.
func (c *DecodeCache) farBehind() int64 { return int64(len(c.slots) / 8) }

// Join makes a reader of topics (a runner, for as long as it runs).
func (c *DecodeCache) Join(topics []string) *CacheReader {
	r := &CacheReader{c: c, topics: topics, pos: map[tp]int64{}}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for _, t := range topics {
		c.readers[t] = append(c.readers[t], r)
	}
	return r
}

// Leave ends r's membership: nothing is kept for it any more.
func (r *CacheReader) Leave() {
	c := r.c
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for _, t := range r.topics {
		rs := c.readers[t]
		for i, x := range rs {
			if x == r {
				c.readers[t] = append(rs[:i:i], rs[i+1:]...)
				break
			}
		}
	}
}

// saw notes that r read kr's position.
func (r *CacheReader) saw(kr *kgo.Record) {
	r.mu.Lock()
	k := tp{kr.Topic, kr.Partition}
	r.pos[k] = max(r.pos[k], kr.Offset)
	r.mu.Unlock()
}

// behind says whether r has yet to read kr and is near enough for it to be
// kept for it.
func (r *CacheReader) behind(kr *kgo.Record, far int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pos[tp{kr.Topic, kr.Partition}]
	if !ok {
		return true // has not read the partition yet (just started): may come
	}
	return p < kr.Offset && kr.Offset-p <= far
}

// waiting counts the readers of kr's topic, but the one that has it, that
// will want it soon.
func (c *DecodeCache) waiting(kr *kgo.Record, self *CacheReader) int {
	far := c.farBehind()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n := 0
	for _, r := range c.readers[kr.Topic] {
		if r != self && r.behind(kr, far) {
			n++
		}
	}
	return n
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

// took counts one reader's take of a decoded slot; the last frees it.
func (s *cacheSlot) took() {
	if s.left--; s.left <= 0 {
		s.free()
	}
}

// take returns the event decoded from kr by another (cacheHit), says that
// another runner is decoding it (cacheBusy: the caller waits for it later),
// or claims it for the caller (cacheMiss), who then puts or releases it.
func (r *CacheReader) take(kr *kgo.Record) (*schemas.Event, cacheState) {
	s, mu := r.c.lock(kr)
	defer mu.Unlock()
	if s.is(kr) {
		if s.state == cacheBusy {
			return nil, cacheBusy
		}
		ev := s.ev
		s.took()
		r.saw(kr)
		return ev, cacheHit
	}
	s.free()
	*s = cacheSlot{state: cacheBusy, topic: kr.Topic, partition: kr.Partition, offset: kr.Offset, raw: kr.Value, done: make(chan struct{})}
	r.saw(kr)
	return nil, cacheMiss
}

// wait waits for another runner to finish decoding kr; nil when it did not
// in time, or gave up: the caller decodes it then.
func (r *CacheReader) wait(kr *kgo.Record) *schemas.Event {
	timeout := time.NewTimer(waitForDecode)
	defer timeout.Stop()
	for {
		s, mu := r.c.lock(kr)
		ok := s.is(kr)
		st, ev, done := s.state, s.ev, s.done
		if ok && st == cacheHit {
			s.took()
			r.saw(kr)
		}
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

// put leaves the event r decoded from kr for the readers yet to read it.
func (r *CacheReader) put(kr *kgo.Record, ev *schemas.Event) {
	r.saw(kr)
	r.c.put(kr, ev, r)
}

// Put leaves an event decoded from kr, a record about to be read (the door
// forwarding it), for the readers of its topic.
func (c *DecodeCache) Put(kr *kgo.Record, ev *schemas.Event) { c.put(kr, ev, nil) }

func (c *DecodeCache) put(kr *kgo.Record, ev *schemas.Event, self *CacheReader) {
	n := c.waiting(kr, self)
	s, mu := c.lock(kr)
	defer mu.Unlock()
	if n == 0 {
		if s.is(kr) {
			s.free() // the caller's claim: nobody else wants it
		}
		return
	}
	s.free()
	*s = cacheSlot{state: cacheHit, topic: kr.Topic, partition: kr.Partition, offset: kr.Offset, raw: kr.Value, ev: ev, left: n}
}

// release gives up the caller's claim of kr (it could not be decoded).
func (r *CacheReader) release(kr *kgo.Record) {
	r.saw(kr)
	s, mu := r.c.lock(kr)
	defer mu.Unlock()
	if s.is(kr) && s.state == cacheBusy {
		s.free()
	}
}
