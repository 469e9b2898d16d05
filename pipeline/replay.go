package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// Replayer is a sink that can take a replay: the changes of one partition
// applied again from an earlier offset up to what the sink already holds,
// repairing what was lost or damaged in it, without duplicating anything and
// without moving its ledger (records past the ledger are the pipeline's).
type Replayer interface {
	Sink
	// Replay asks fetch for the partition's records up to the sink's own
	// ledger position and applies them. It returns how many records it read.
	// committed is the sink's consumer group's committed offset (-1 if
	// none): the runner commits it after each written batch, so it is a lower
	// bound of what landed, for a sink whose ledger is its data and may have
	// been damaged with it.
	Replay(ctx context.Context, it *catalog.Item, partition int32, committed int64, fetch Fetch) (int, error)
}

// Fetch streams a partition's decoded records from the replay's start up to
// until (exclusive), a chunk at a time.
type Fetch func(ctx context.Context, until int64, each func([]Record) error) error

// From is where a replay starts: an offset, or the first record at or after
// a time. Offsets before the log start begin at the log start.
type From struct {
	Offset int64
	Time   time.Time // used when not zero
}

// ReplayProgress reports a replay's progress.
type ReplayProgress struct {
	Partition   int32
	Read, Total int64 // records read of the partition; Total is an estimate until the sink names its ledger
	Done        bool
}

// Replay re-delivers one item to sink from `from`, partition by partition.
// It needs the item's topic and the registry the records were written with.
func Replay(ctx context.Context, cfg Config, sink Replayer, it *catalog.Item, from From, progress func(ReplayProgress)) (int, error) {
	cfg.defaults()
	if progress == nil {
		progress = func(ReplayProgress) {}
	}
	reg, err := sr.NewClient(cfg.Registry...)
	if err != nil {
		return 0, fmt.Errorf("replay: registry: %w", err)
	}
	dec := schemas.NewDecoder(reg)
	admin, err := kafkaconn.NewClient(cfg.Kafka)
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	topic := it.Topic()
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	if err := starts.Error(); err != nil {
		return 0, fmt.Errorf("replay: topic %s: %w", topic, err)
	}
	var atTime kadm.ListedOffsets
	if !from.Time.IsZero() {
		if atTime, err = adm.ListOffsetsAfterMilli(ctx, from.Time.UnixMilli(), topic); err != nil {
			return 0, fmt.Errorf("replay: %w", err)
		}
	}
	// Prepared as the pipeline prepares it: with every item it holds.
	prep := []*catalog.Item{it}
	if cfg.Catalog != nil {
		prep = prep[:0]
		for _, c := range cfg.Catalog.Items {
			if sink.Accepts(c) {
				prep = append(prep, c)
			}
		}
	}
	if err := sink.Prepare(ctx, prep); err != nil {
		return 0, err
	}
	committed := map[int32]int64{}
	if fetched, err := adm.FetchOffsets(ctx, cfg.GroupPrefix+sink.Name()); err == nil {
		fetched.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.Err == nil {
				committed[o.Partition] = o.At
			}
		})
	}
	total := 0
	var parts []int32
	starts.Each(func(o kadm.ListedOffset) { parts = append(parts, o.Partition) })
	for _, p := range parts {
		start := from.Offset
		if lo, ok := starts.Lookup(topic, p); ok && start < lo.Offset {
			start = lo.Offset
		}
		if atTime != nil {
			if o, ok := atTime.Lookup(topic, p); ok {
				start = max(o.Offset, start)
			}
		}
		fetch := func(ctx context.Context, until int64, each func([]Record) error) error {
			return fetchRange(ctx, cfg, dec, it, p, start, until, func(read int64, recs []Record) error {
				progress(ReplayProgress{Partition: p, Read: read, Total: max(0, until-start)})
				return each(recs)
			})
		}
		c, ok := committed[p]
		if !ok {
			c = -1
		}
		n, err := sink.Replay(ctx, it, p, c, fetch)
		total += n
		if err != nil {
			return total, fmt.Errorf("replay: %s partition %d: %w", topic, p, err)
		}
		progress(ReplayProgress{Partition: p, Read: int64(n), Total: int64(n), Done: true})
	}
	return total, nil
}

// fetchRange reads [start, until) of one partition, decoded; records that
// cannot be decoded come without an event, as the pipeline passes them.
func fetchRange(ctx context.Context, cfg Config, dec *schemas.Decoder, it *catalog.Item, p int32, start, until int64, each func(int64, []Record) error) error {
	if start >= until {
		return nil
	}
	cl, err := kafkaconn.NewClient(cfg.Kafka,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{it.Topic(): {p: kgo.NewOffset().At(start)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	var read int64
	idle := 0
	for next := start; next < until; {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollRecords(pctx, cfg.MaxBatch)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fs.Err0(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		var recs []Record
		for _, kr := range fs.Records() {
			next = kr.Offset + 1
			if kr.Offset >= until {
				break
			}
			rec := Record{Item: it, Partition: p, Offset: kr.Offset}
			if IsLegacyFlag(kr) {
				recs = append(recs, rec) // not a change: only the ledger moves
				continue
			}
			ev, err := dec.Decode(ctx, kr.Value)
			var bad *schemas.RecordError
			switch {
			case errors.As(err, &bad):
				rec.DeadLetter = bad.Error()
			case err != nil:
				return err
			default:
				rec.Event = ev
			}
			recs = append(recs, rec)
		}
		// Transaction markers and aborted records take offsets too: the
		// range may end without a record at until-1.
		if len(recs) == 0 {
			// Nothing more to read below until: the rest are markers or
			// aborted records, which read-committed consumers never see.
			if end, ok := highWater(ctx, cl, it.Topic(), p); (ok && end <= next) || idle >= 3 {
				break
			}
			idle++
			continue
		}
		idle = 0
		read += int64(len(recs))
		if err := each(read, recs); err != nil {
			return err
		}
	}
	return nil
}

// highWater is the partition's end offset as last fetched.
func highWater(ctx context.Context, cl *kgo.Client, topic string, p int32) (int64, bool) {
	offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, false
	}
	o, ok := offs.Lookup(topic, p)
	return o.Offset, ok
}
