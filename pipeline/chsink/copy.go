package chsink

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
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
	// Views are statements run once the table has its columns (views over
	// it, and the tables they join, made if missing).
	Views []string
}

// CopySink copies a Table's topic into its table, exactly once, as a
// pipeline.TopicSink: the runner reads the topic from the sink's own ledger
// (the highest position in the table: every row carries its Kafka partition
// and offset), retries it while ClickHouse is down, and dead-letters a
// record the table refuses. The position is read behind the same fence as
// the events sink's ledger, so a copy killed mid-insert is resumed after
// the block that insert lands, never before it; after a failed insert
// (whose block may or may not have landed) the next write reads the
// position again, behind the fence too, and leaves out what landed.
type CopySink struct {
	c     *copier
	conn  driver.Conn
	dirty bool            // the last insert failed: its block may have landed
	next  map[int32]int64 // the next offset to copy, per partition
}

// NewCopy opens the copy of t into the ClickHouse database of dsn.
func NewCopy(dsn string, t Table, log *slog.Logger) (*CopySink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("chsink: %w", err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("chsink: %w", err)
	}
	c := &copier{t: t, conn: conn, table: tableOf(t.Insert), log: log}
	c.fence = newFence(log, conn, opts.Auth.Database, "copy."+c.table)
	return &CopySink{c: c, conn: conn, next: map[int32]int64{}}, nil
}

// Copy runs the copy of t until ctx is done, with the runner's settings in
// cfg (Kafka, catalog, metrics); its blocks are of up to a second's worth
// (every insert makes a part that ClickHouse merges later: a busy topic, the
// lookups' audit, must not insert a block per fetch).
func Copy(ctx context.Context, cfg pipeline.Config, dsn string, t Table, log *slog.Logger) error {
	s, err := NewCopy(dsn, t, log)
	if err != nil {
		return err
	}
	defer s.Close()
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Second
	}
	r, err := pipeline.New(cfg, s)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// Name implements pipeline.Sink: copy.<table>.
func (s *CopySink) Name() string { return "copy." + s.c.table }

// Topics implements pipeline.TopicSink.
func (s *CopySink) Topics() []string { return []string{s.c.t.Topic} }

// Accepts implements pipeline.Sink: no catalog item (the sink copies its
// topic).
func (s *CopySink) Accepts(*catalog.Item) bool { return false }

// Prepare implements pipeline.Sink: the table, and the columns added since
// its first version.
func (s *CopySink) Prepare(ctx context.Context, _ []*catalog.Item) error {
	if err := s.conn.Exec(ctx, s.c.t.DDL); err != nil {
		return err
	}
	if err := s.c.addColumns(ctx); err != nil {
		return err
	}
	for _, v := range s.c.t.Views {
		if err := s.conn.Exec(ctx, v); err != nil {
			return fmt.Errorf("chsink: %w", err)
		}
	}
	return nil
}

// Offsets implements pipeline.Sink: the highest position in the table, plus
// one, behind the fence.
func (s *CopySink) Offsets(ctx context.Context, _ []string) (pipeline.Offsets, error) {
	last, err := s.c.positions(ctx)
	if err != nil {
		return nil, err
	}
	out := pipeline.Offsets{s.c.t.Topic: {}}
	for p, o := range last {
		out[s.c.t.Topic][p] = o + 1
		s.next[p] = o + 1
	}
	s.dirty = false
	return out, nil
}

// Write implements pipeline.Sink: one block of the batch's rows (those at
// or past the ledger).
func (s *CopySink) Write(ctx context.Context, batch []pipeline.Record, _ time.Time) error {
	if s.dirty { // the failed block may have landed: keep only what did not
		if _, err := s.Offsets(ctx, nil); err != nil {
			return err
		}
	}
	recs := make([]*kgo.Record, 0, len(batch))
	for _, r := range batch {
		if r.Raw != nil && r.Offset >= s.next[r.Partition] && r.DeadLetter == "" {
			recs = append(recs, r.Raw)
		}
	}
	if err := s.c.insert(ctx, recs); err != nil {
		s.dirty = true
		return err
	}
	for _, r := range batch {
		s.next[r.Partition] = max(s.next[r.Partition], r.Offset+1)
	}
	return nil
}

// Close implements pipeline.Sink.
func (s *CopySink) Close() error { return s.conn.Close() }

type copier struct {
	t     Table
	conn  driver.Conn
	table string
	fence fence
	log   *slog.Logger
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
