package chsink

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
	"github.com/jutong/jutong/internal/retry"
)

// Table is a JSON topic copied into a ClickHouse table by Copy: the audit
// trail (package audit describes its table) and the quarantine (RejectsTable).
type Table struct {
	Topic string
	// DDL creates the table; among its columns are kafka_partition Int32
	// and kafka_offset Int64.
	DDL string
	// Insert is "INSERT INTO t (columns...)", the position columns last.
	Insert string
	// Added are the columns (name, type) added to DDL since its first
	// version: a table made before lacks them, and gets them at start
	// (ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS).
	Added [][2]string
	// Row turns a record's value into the row's values, positions excluded.
	Row func(value []byte, ts time.Time) []any
	// Seen, when set, is called for every record copied (metrics).
	Seen func(value []byte)
}

// Copy copies t's topic into its table until ctx is done, exactly once:
// every row carries its Kafka partition and offset, and the copy resumes
// after the highest position in the table. The position is read behind the
// same fence as the events sink's ledger, so a copy killed mid-insert is
// resumed after the block that insert lands, never before it; a failed
// insert (whose block may or may not have landed) is followed by a fresh
// read of the position, behind the fence too. ClickHouse that is down is
// waited for, without limit.
func Copy(ctx context.Context, kafka []kgo.Opt, dsn string, t Table, log *slog.Logger) error {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("chsink: %w", err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return fmt.Errorf("chsink: %w", err)
	}
	defer conn.Close()
	c := &copier{t: t, conn: conn, table: tableOf(t.Insert), log: log}
	c.fence = newFence(log, conn, opts.Auth.Database, "copy."+c.table)
	backoff := retry.Backoff{Min: 500 * time.Millisecond, Max: 5 * time.Second}
	warn := func(what string) func(int, error, time.Duration) {
		return func(_ int, err error, wait time.Duration) {
			log.Warn("chsink copy: "+what+" failed, will retry", "table", c.table, "backoff", wait, "err", err)
		}
	}
	var last map[int32]int64
	if _, err := retry.Do(ctx, backoff, func() (err error) {
		if err = conn.Exec(ctx, t.DDL); err != nil {
			return err
		}
		if err = c.addColumns(ctx); err != nil {
			return err
		}
		last, err = c.positions(ctx)
		return err
	}, warn("start")); err != nil {
		return nilIfDone(ctx, err)
	}
	start := map[int32]kgo.Offset{}
	parts, err := partitions(ctx, kafka, t.Topic)
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
	// Blocks of up to a second's worth: every insert makes a part that
	// ClickHouse merges later, so a busy topic (the lookups' audit) must
	// not insert a block per fetch.
	cl, err := kafkaconn.NewClient(kafka, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.Topic: start}),
		kgo.FetchMinBytes(1<<20), kgo.FetchMaxWait(time.Second))
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
			log.Warn("chsink copy: fetch", "topic", t.Topic, "partition", p, "err", err)
		})
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		dirty := false
		if _, err := retry.Do(ctx, backoff, func() error {
			if dirty {
				// The failed block may have landed: keep only what did not.
				last, err := c.positions(ctx)
				if err != nil {
					return err
				}
				kept := recs[:0]
				for _, r := range recs {
					if o, ok := last[r.Partition]; !ok || r.Offset > o {
						kept = append(kept, r)
					}
				}
				recs = kept
			}
			if err := c.insert(ctx, recs); err != nil {
				dirty = true
				return err
			}
			return nil
		}, warn("insert")); err != nil {
			return nilIfDone(ctx, err)
		}
		if t.Seen != nil {
			for _, r := range recs {
				t.Seen(r.Value)
			}
		}
	}
}

type copier struct {
	t     Table
	conn  driver.Conn
	table string
	fence fence
	log   *slog.Logger
}

func nilIfDone(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func tableOf(insert string) string {
	var table string
	fmt.Sscanf(insert, "INSERT INTO %s", &table)
	return table
}

// positions reads the highest offset landed per partition, once no insert
// of an earlier copier of the table runs (the fence).
// addColumns adds the Added columns the table lacks.
func (c *copier) addColumns(ctx context.Context) error {
	if len(c.t.Added) == 0 {
		return nil
	}
	rows, err := c.conn.Query(ctx, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ?", c.table)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		have[name] = true
	}
	rows.Close()
	for _, col := range c.t.Added {
		if have[col[0]] {
			continue
		}
		c.log.Info("chsink copy: adding a column", "table", c.table, "column", col[0])
		if err := c.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", c.table, col[0], col[1])); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) positions(ctx context.Context) (map[int32]int64, error) {
	if err := c.fence.wait(ctx); err != nil {
		return nil, err
	}
	rows, err := c.conn.Query(ctx, "SELECT kafka_partition, max(kafka_offset) FROM "+c.table+" GROUP BY kafka_partition")
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

func (c *copier) insert(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	b, err := c.conn.PrepareBatch(c.fence.tag(ctx), c.t.Insert)
	if err != nil {
		return err
	}
	defer b.Abort() //nolint:errcheck
	for _, r := range recs {
		row := append(c.t.Row(r.Value, r.Timestamp), r.Partition, r.Offset)
		if err := b.Append(row...); err != nil {
			return err
		}
	}
	return b.Send()
}

func partitions(ctx context.Context, kafka []kgo.Opt, topic string) ([]int32, error) {
	admin, err := kafkaconn.NewClient(kafka)
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
