// Package chcopy copies a Kafka topic of JSON records into a ClickHouse
// table, exactly once: every row carries its Kafka partition and offset, and
// the copy resumes after the highest position in the table (after a failed
// insert too, whose block may or may not have landed). Jutong copies its
// audit trail and its quarantine this way.
package chcopy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// Table describes the copy.
type Table struct {
	Topic string
	// DDL creates the table; its last two columns are kafka_partition Int32
	// and kafka_offset Int64.
	DDL string
	// Insert is "INSERT INTO t (columns...)", the position columns last.
	Insert string
	// Row turns a record's value into the row's values, positions excluded.
	Row func(value []byte, ts time.Time) []any
	// Seen, when set, is called for every record copied (metrics).
	Seen func(value []byte)
}

// Run copies until ctx is done.
func Run(ctx context.Context, k kafkaconn.Config, dsn string, t Table, log *slog.Logger) error {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("chcopy: %w", err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return fmt.Errorf("chcopy: %w", err)
	}
	defer conn.Close()
	table := tableOf(t.Insert)
	for {
		if err = conn.Exec(ctx, t.DDL); err == nil || ctx.Err() != nil {
			break
		}
		log.Warn("chcopy: ClickHouse not ready, will retry", "table", table, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	last, err := positions(ctx, conn, table)
	if err != nil {
		return err
	}
	start := map[int32]kgo.Offset{}
	parts, err := partitions(ctx, k, t.Topic)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if o, ok := last[p]; ok {
			start[p] = kgo.NewOffset().At(o + 1)
		} else {
			start[p] = kgo.NewOffset().AtStart()
		}
	}
	cl, err := k.Client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.Topic: start}))
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(_ string, p int32, err error) {
			log.Warn("chcopy fetch", "topic", t.Topic, "partition", p, "err", err)
		})
		recs := fs.Records()
		for len(recs) > 0 {
			err := insert(ctx, conn, t, recs)
			if err == nil {
				if t.Seen != nil {
					for _, r := range recs {
						t.Seen(r.Value)
					}
				}
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("chcopy: insert failed, will retry", "table", table, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
			// The block may have landed: keep only what did not.
			if last, err := positions(ctx, conn, table); err == nil {
				kept := recs[:0]
				for _, r := range recs {
					if o, ok := last[r.Partition]; !ok || r.Offset > o {
						kept = append(kept, r)
					}
				}
				recs = kept
			}
		}
	}
}

func tableOf(insert string) string {
	var table string
	fmt.Sscanf(insert, "INSERT INTO %s", &table)
	return table
}

func positions(ctx context.Context, conn driver.Conn, table string) (map[int32]int64, error) {
	rows, err := conn.Query(ctx, "SELECT kafka_partition, max(kafka_offset) FROM "+table+" GROUP BY kafka_partition")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var p int32
		var o int64
		if err := rows.Scan(&p, &o); err != nil {
			return nil, err
		}
		out[p] = o
	}
	return out, rows.Err()
}

func partitions(ctx context.Context, k kafkaconn.Config, topic string) ([]int32, error) {
	admin, err := k.Client()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	offs, err := kadm.NewClient(admin).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	var out []int32
	offs.Each(func(o kadm.ListedOffset) { out = append(out, o.Partition) })
	return out, nil
}

func insert(ctx context.Context, conn driver.Conn, t Table, recs []*kgo.Record) error {
	b, err := conn.PrepareBatch(ctx, t.Insert)
	if err != nil {
		return err
	}
	defer b.Abort() //nolint:errcheck
	for _, r := range recs {
		row := append(t.Row(r.Value, r.Timestamp), r.Partition, r.Offset)
		if err := b.Append(row...); err != nil {
			return err
		}
	}
	return b.Send()
}
