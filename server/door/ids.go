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

// idIndex is the accepted event ids of the window, by item and id.
type idIndex struct {
	window time.Duration
	mu     sync.Mutex
	ids    map[string]idEntry
}

type idEntry struct {
	pos Position
	at  time.Time
}

func idKey(item, id string) string { return item + "\x00" + id }

// load reads the ids topic to its end, keeping what is inside the window.
func (x *idIndex) load(ctx context.Context, kafka []kgo.Opt, now time.Time) error {
	x.ids = map[string]idEntry{}
	return kafkaconn.ReadAll(ctx, kafka, topicname.DoorIDs, func(r *kgo.Record) { x.read(r, now) })
}

// read keeps the ids of one record of the ids topic that are in the window:
// a batch (idRecords) or, as written before, a single id (idRecord).
func (x *idIndex) read(r *kgo.Record, now time.Time) {
	if !strings.HasPrefix(string(r.Key), idBatchPrefix) {
		if e, ok := parseIDEntry(r.Value); ok && now.Sub(e.at) < x.window {
			x.ids[string(r.Key)] = e
		}
		return
	}
	var pairs [][2]string
	if err := json.Unmarshal(r.Value, &pairs); err != nil {
		return // not one of ours: nothing to remember
	}
	for _, kv := range pairs {
		if e, ok := parseIDEntry([]byte(kv[1])); ok && now.Sub(e.at) < x.window {
			x.ids[kv[0]] = e
		}
	}
}

func (x *idIndex) lookup(item, id string, now time.Time) (Position, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.ids[idKey(item, id)]
	if !ok || now.Sub(e.at) >= x.window {
		return Position{}, false
	}
	return e.pos, true
}

func (x *idIndex) add(item, id string, pos Position, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ids[idKey(item, id)] = idEntry{pos, at}
	if len(x.ids)%100_000 == 0 { // now and then, forget what left the window
		for k, e := range x.ids {
			if at.Sub(e.at) >= x.window {
				delete(x.ids, k)
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
	return idEntry{Position{int32(p), o}, time.UnixMilli(ms)}, true
}
