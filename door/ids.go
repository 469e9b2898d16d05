package door

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/topicname"
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
	return kafkaconn.ReadAll(ctx, kafka, topicname.DoorIDs, func(r *kgo.Record) {
		if e, ok := parseIDEntry(r.Value); ok && now.Sub(e.at) < x.window {
			x.ids[string(r.Key)] = e
		}
	})
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

// record is the ids topic's record of an accepted id.
func idRecord(item, id string, pos Position, at time.Time) *kgo.Record {
	return &kgo.Record{Topic: topicname.DoorIDs, Key: []byte(idKey(item, id)),
		Value: []byte(fmt.Sprintf("%d:%d:%d", pos.Partition, pos.Offset, at.UnixMilli()))}
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
