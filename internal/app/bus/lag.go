package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline"
)

// Lag returns how many records are yet to be passed on: per sink, the
// records of the item topics not yet in its ledger, and under "door" those
// of the inboxes the door has not yet forwarded. Transaction markers, which
// take offsets no consumer sees, do not count.
func (b *Bus) Lag(ctx context.Context) (map[string]int64, error) {
	admin, err := kafkaconn.NewClient(b.kopts)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	var names []string
	for _, it := range b.cfg.Catalog.Items {
		names = append(names, it.Topic())
	}
	for _, d := range b.cfg.Catalog.Departments {
		names = append(names, topicname.Inbox(d.Code))
	}
	// The door's position is read before the ends: whatever the door had
	// committed then is already in the item topics' ends read after it, so
	// a door commit between the two reads cannot hide records from a sink.
	committed, err := adm.FetchOffsets(ctx, b.door.Group())
	if err != nil {
		return nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, err
	}
	// Each counter's topics and its positions: a sink's ledger over the
	// items it accepts, the door's committed offsets over the inboxes.
	type counter struct {
		topics map[string]bool
		pos    kafkaconn.Offsets
	}
	counters := map[string]counter{}
	for _, s := range b.sinks {
		c := counter{topics: map[string]bool{}}
		var accepted []string
		for _, it := range b.cfg.Catalog.Items {
			if s.Accepts(it) {
				accepted = append(accepted, it.Topic())
				c.topics[it.Topic()] = true
			}
		}
		ledger, err := pipeline.ReadLedger(ctx, s, accepted)
		if err != nil {
			return nil, err
		}
		c.pos = kafkaconn.Offsets(ledger)
		counters[s.Name()] = c
	}
	door := counter{topics: map[string]bool{}, pos: kafkaconn.Offsets{}}
	for _, d := range b.cfg.Catalog.Departments {
		door.topics[topicname.Inbox(d.Code)] = true
	}
	committed.Each(func(o kadm.OffsetResponse) {
		if door.pos[o.Topic] == nil {
			door.pos[o.Topic] = map[int32]int64{}
		}
		door.pos[o.Topic][o.Partition] = o.At
	})
	counters["door"] = door
	out := map[string]int64{}
	for name, c := range counters {
		out[name] = 0
		spans := map[string]map[int32]kafkaconn.Span{}
		ends.Each(func(o kadm.ListedOffset) {
			if !c.topics[o.Topic] {
				return
			}
			if spans[o.Topic] == nil {
				spans[o.Topic] = map[int32]kafkaconn.Span{}
			}
			spans[o.Topic][o.Partition] = kafkaconn.Span{From: c.pos[o.Topic][o.Partition], End: o.Offset}
		})
		pending, err := kafkaconn.Pending(ctx, b.kopts, spans, 1<<20, 2*time.Second)
		if err != nil {
			return nil, err
		}
		for _, ps := range pending {
			for _, n := range ps {
				out[name] += n
			}
		}
	}
	return out, nil
}

// WaitCaughtUp waits until every sink's ledger reached the end of every topic.
func (b *Bus) WaitCaughtUp(ctx context.Context) error {
	for {
		lag, err := b.Lag(ctx)
		if err == nil {
			done := true
			for _, l := range lag {
				done = done && l == 0
			}
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sinks not caught up (lag %v): %w", lag, ctx.Err())
		case err := <-b.errs:
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
