package door

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/topicname"
)

// Position is where an accepted record landed in its item's topic.
type Position struct {
	Partition int32
	Offset    int64
}

// idIndex is the accepted event ids of the window, by item and id. It
// holds every id of the window (24 hours: millions), so its maps hold no
// pointer the garbage collector must follow at every cycle: an id in the
// form the SDKs make (a UUID in lowercase hex, 8-4-4-4-12) is kept as its
// 16 bytes under the item's number, any other as a string.
type idIndex struct {
	window time.Duration
	mu     sync.Mutex
	items  map[string]uint32 // item code -> its number here
	uuids  map[uuidKey]idEntry
	other  map[string]idEntry // by idKey
}

type uuidKey struct {
	item uint32
	id   [16]byte
}

type idEntry struct {
	pos  Position
	atMs int64 // when accepted (Unix milliseconds)
}

func idKey(item, id string) string { return item + "\x00" + id }

func (x *idIndex) init() {
	x.items, x.uuids, x.other = map[string]uint32{}, map[uuidKey]idEntry{}, map[string]idEntry{}
}

// set remembers an id (x.mu held, or during load).
func (x *idIndex) set(item, id string, e idEntry) {
	if k, ok := x.uuidKey(item, id, true); ok {
		x.uuids[k] = e
		return
	}
	x.other[idKey(item, id)] = e
}

// get finds an id (x.mu held).
func (x *idIndex) get(item, id string) (idEntry, bool) {
	if k, ok := x.uuidKey(item, id, false); ok {
		e, found := x.uuids[k]
		return e, found
	}
	e, found := x.other[idKey(item, id)]
	return e, found
}

// uuidKey is the compact key of an id in the SDKs' form; false for any
// other id (or, unless add, an item with no id kept yet).
func (x *idIndex) uuidKey(item, id string, add bool) (uuidKey, bool) {
	var k uuidKey
	if !parseLowerUUID(id, &k.id) {
		return k, false
	}
	n, ok := x.items[item]
	if !ok {
		if !add {
			return k, false
		}
		n = uint32(len(x.items))
		x.items[item] = n
	}
	k.item = n
	return k, true
}

// parseLowerUUID reads 8-4-4-4-12 lowercase hex digits into b: exactly one
// string gives each 16 bytes, so the compact key is as exact as the string.
func parseLowerUUID(s string, b *[16]byte) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := lowerHex(s[i])
		lo, ok2 := lowerHex(s[i+1])
		if !ok1 || !ok2 {
			return false
		}
		b[j] = hi<<4 | lo
		i, j = i+2, j+1
	}
	return true
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// load reads the ids topic to its end, keeping what is inside the window.
func (x *idIndex) load(ctx context.Context, kafka []kgo.Opt, now time.Time) error {
	x.init()
	return kafkaconn.ReadAll(ctx, kafka, topicname.DoorIDs, func(r *kgo.Record) { x.read(r, now) })
}

// read keeps the ids of one record of the ids topic that are in the window:
// a batch (idRecords) or, as written before, a single id (idRecord).
func (x *idIndex) read(r *kgo.Record, now time.Time) {
	keep := func(key string, v []byte) {
		e, ok := parseIDEntry(v)
		if !ok || now.UnixMilli()-e.atMs >= x.window.Milliseconds() {
			return
		}
		item, id, found := strings.Cut(key, "\x00")
		if !found {
			return // not one of ours
		}
		x.set(item, id, e)
	}
	if !strings.HasPrefix(string(r.Key), idBatchPrefix) {
		keep(string(r.Key), r.Value)
		return
	}
	var pairs [][2]string
	if err := json.Unmarshal(r.Value, &pairs); err != nil {
		return // not one of ours: nothing to remember
	}
	for _, kv := range pairs {
		keep(kv[0], []byte(kv[1]))
	}
}

func (x *idIndex) lookup(item, id string, now time.Time) (Position, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.get(item, id)
	if !ok || now.UnixMilli()-e.atMs >= x.window.Milliseconds() {
		return Position{}, false
	}
	return e.pos, true
}

func (x *idIndex) add(item, id string, pos Position, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.set(item, id, idEntry{pos, at.UnixMilli()})
	if n := len(x.uuids) + len(x.other); n%100_000 == 0 { // now and then, forget what left the window
		cut := at.UnixMilli() - x.window.Milliseconds()
		for k, e := range x.uuids {
			if e.atMs <= cut {
				delete(x.uuids, k)
			}
		}
		for k, e := range x.other {
			if e.atMs <= cut {
				delete(x.other, k)
			}
		}
	}
}

// record is the ids topic's record of an accepted id (as written before
// ids were batched; still read).
func idRecord(item, id string, pos Position, at time.Time) *kgo.Record {
	return &kgo.Record{Topic: topicname.DoorIDs, Key: []byte(idKey(item, id)), Value: idValue(pos, at)}
}

func idValue(pos Position, at time.Time) []byte {
	return []byte(fmt.Sprintf("%d:%d:%d", pos.Partition, pos.Offset, at.UnixMilli()))
}

// idBatchPrefix begins the key of a record holding several accepted ids:
// its value is a JSON array of [idKey, position] pairs. No idKey begins with
// it (an item code starts with a letter).
const idBatchPrefix = "\x00batch\x00"

// idsPerRecord bounds the ids in one record (well under Kafka's record size).
const idsPerRecord = 2000

// idRecords are the ids topic's records of a transaction's accepted ids:
// one per idsPerRecord ids rather than one per id (half the records the
// door writes). Each is keyed by its first id, unique in the window.
func idRecords(ids []accepted, at time.Time) []*kgo.Record {
	var out []*kgo.Record
	for len(ids) > 0 {
		n := min(len(ids), idsPerRecord)
		pairs := make([][2]string, n)
		for i, a := range ids[:n] {
			pairs[i] = [2]string{idKey(a.item, a.id), string(idValue(a.pos, at))}
		}
		v, _ := json.Marshal(pairs) // strings only: cannot fail
		out = append(out, &kgo.Record{Topic: topicname.DoorIDs, Key: []byte(idBatchPrefix + pairs[0][0]), Value: v})
		ids = ids[n:]
	}
	return out
}

func parseIDEntry(v []byte) (idEntry, bool) {
	f := strings.Split(string(v), ":")
	if len(f) != 3 {
		return idEntry{}, false
	}
	p, err1 := strconv.ParseInt(f[0], 10, 32)
	o, err2 := strconv.ParseInt(f[1], 10, 64)
	ms, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return idEntry{}, false
	}
	return idEntry{Position{int32(p), o}, ms}, true
}
