package kafkaconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadAll reads a topic (a compacted state topic, typically) from its start
// up to the end it has when called, read-committed, calling fn for each
// record in partition order. Transaction markers and aborted records take
// offsets a consumer never sees: markers are read (and not handed to fn)
// so that a partition ending in one is seen to end; a read also ends when
// nothing came for two seconds.
func ReadAll(ctx context.Context, opts []kgo.Opt, topic string, fn func(*kgo.Record)) error {
	admin, err := NewClient(opts)
	if err != nil {
		return err
	}
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, topic)
	admin.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	want := map[int32]int64{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = o.Err
		} else if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if lerr != nil {
		return fmt.Errorf("read %s: %w", topic, lerr)
	}
	if len(want) == 0 {
		return nil
	}
	// Control records (transaction markers) are kept so that a partition
	// ending in one is seen to end; they are not handed to fn.
	cl, err := NewClient(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(want) > 0 {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("read %s: %w", topic, fe.Err)
			}
		}
		if fs.NumRecords() == 0 {
			return nil // nothing for two seconds: what is left was aborted
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if !r.Attrs.IsControl() {
				fn(r)
			}
		})
	}
	return nil
}
