package kafkaconn

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Offsets are positions by topic and partition.
type Offsets = map[string]map[int32]int64

// Span is a range of a partition: from a consumer's position to the end.
type Span struct{ From, End int64 }

// Pending tells, for each span, how many records a read-committed consumer
// at From has yet to read before End: End-From when any committed record is
// in the span, 0 when the span holds only transaction markers and aborted
// records (which take offsets that no consumer ever sees, so that End-From
// alone would never reach zero on a topic written with transactions). It
// reads each span that may be markers only (at most maxCheck offsets long;
// longer spans count as End-From), for at most wait.
func Pending(ctx context.Context, opts []kgo.Opt, spans map[string]map[int32]Span, maxCheck int64, wait time.Duration) (map[string]map[int32]int64, error) {
	out := map[string]map[int32]int64{}
	check := map[string]map[int32]kgo.Offset{}
	left := 0
	for t, ps := range spans {
		out[t] = map[int32]int64{}
		for p, s := range ps {
			n := max(0, s.End-s.From)
			out[t][p] = n
			if n > 0 && n <= maxCheck {
				if check[t] == nil {
					check[t] = map[int32]kgo.Offset{}
				}
				check[t][p] = kgo.NewOffset().At(s.From)
				left++
			}
		}
	}
	if left == 0 {
		return out, nil
	}
	cl, err := NewClient(opts, kgo.ConsumePartitions(check), kgo.KeepControlRecords(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	done := map[string]map[int32]bool{}
	for left > 0 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			s := spans[r.Topic][r.Partition]
			if done[r.Topic][r.Partition] || r.Offset < s.From {
				return
			}
			data := !r.Attrs.IsControl()
			if data || r.Offset >= s.End-1 {
				if done[r.Topic] == nil {
					done[r.Topic] = map[int32]bool{}
				}
				done[r.Topic][r.Partition] = true
				left--
				if !data {
					out[r.Topic][r.Partition] = 0 // markers only up to the end
				}
			}
		})
	}
	return out, nil
}
