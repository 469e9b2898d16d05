package chsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/schemas"
)

// EventsDDL creates the history table.
const EventsDDL = `CREATE TABLE IF NOT EXISTS events (
  item String,
  kafka_partition Int32,
  kafka_offset Int64,
  key String,
  op Enum8('CREATE' = 1, 'UPDATE' = 2, 'DELETE' = 3, 'SNAPSHOT' = 4),
  event_id String,
  source_department String,
  source_system String,
  source_adapter String,
  event_time DateTime,
  event_time_ms Int64,
  publish_time DateTime,
  publish_time_ms Int64,
  landed_time DateTime,
  landed_time_ms Int64,
  data String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(landed_time)
ORDER BY (item, kafka_partition, kafka_offset)`

// DeadDDL records the positions of dead-lettered records, with the error:
// the sink's ledger is the highest position in events and dead_letters, so a
// dead-lettered record is passed once, even as the last of its partition.
const DeadDDL = `CREATE TABLE IF NOT EXISTS dead_letters (
  item String,
  kafka_partition Int32,
  kafka_offset Int64,
  error String,
  landed_time DateTime
) ENGINE = MergeTree
ORDER BY (item, kafka_partition, kafka_offset)`

const deadInsertSQL = `INSERT INTO dead_letters (item, kafka_partition, kafka_offset, error, landed_time)`

// CatalogDDL mirrors the catalog's items for the scorecards: who owns each,
// how often it must change (refreshed by every sink start).
const CatalogDDL = `CREATE TABLE IF NOT EXISTS catalog_items (
  item String,
  name String,
  department String,
  base String,
  share String,
  update_frequency String,
  interval_seconds UInt32,
  version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY item`

// ScorecardDDL are the department scorecards analysts query (docs/operations.md).
var ScorecardDDL = []string{
	`CREATE VIEW IF NOT EXISTS scorecard_volume AS
SELECT source_department AS department, item, toDate(publish_time) AS day,
  count() AS events, countIf(op = 'CREATE') AS creates, countIf(op = 'UPDATE') AS updates,
  countIf(op = 'DELETE') AS deletes, countIf(op = 'SNAPSHOT') AS snapshots
FROM events GROUP BY department, item, day`,
	`CREATE VIEW IF NOT EXISTS scorecard_latency AS
SELECT source_department AS department, toDate(publish_time) AS day, count() AS events,
  quantileExactIf(0.5)(publish_time_ms - event_time_ms, publish_time_ms - event_time_ms <= 2592000000) AS p50_publish_delay_ms,
  quantileExactIf(0.99)(publish_time_ms - event_time_ms, publish_time_ms - event_time_ms <= 2592000000) AS p99_publish_delay_ms,
  countIf(publish_time_ms - event_time_ms > 2592000000) AS backdated,
  quantileExact(0.5)(landed_time_ms - publish_time_ms) AS p50_landing_ms,
  quantileExact(0.99)(landed_time_ms - publish_time_ms) AS p99_landing_ms
FROM events GROUP BY department, day`,
	`CREATE VIEW IF NOT EXISTS scorecard_rejects AS
SELECT department, item, rule, toDate(rejected_at) AS day, count() AS rejects
FROM rejects GROUP BY department, item, rule, day`,
	`CREATE VIEW IF NOT EXISTS scorecard_reject_rate AS
SELECT department, accepted, rejected, if(accepted + rejected = 0, 0, round(rejected / (accepted + rejected), 4)) AS reject_rate
FROM (SELECT source_department AS department, count() AS accepted FROM events GROUP BY department)
ALL FULL OUTER JOIN (SELECT department, count() AS rejected FROM rejects GROUP BY department) USING department`,
	`CREATE VIEW IF NOT EXISTS scorecard_timeliness AS
SELECT item, department, update_frequency, interval_seconds, last_publish,
  toInt64(toUInt32(now())) - toInt64(toUInt32(last_publish)) AS age_seconds,
  age_seconds <= interval_seconds AS on_time
FROM (SELECT item, department, update_frequency, interval_seconds FROM catalog_items FINAL)
ALL LEFT JOIN (SELECT item, max(publish_time) AS last_publish FROM events GROUP BY item) USING item`,
}

// StateDDL and CurrentDDL keep the current state of every item: one row per
// (item, key) after merges, the highest Kafka offset winning (all changes of
// a key are in one partition, so offsets order them). The view applies FINAL
// and hides deleted keys, so it is exact before merges too.
const StateDDL = `CREATE TABLE IF NOT EXISTS current_state (
  item String,
  key String,
  version Int64,
  deleted UInt8,
  op Enum8('CREATE' = 1, 'UPDATE' = 2, 'DELETE' = 3, 'SNAPSHOT' = 4),
  source_department String,
  event_time DateTime,
  landed_time DateTime,
  data String
) ENGINE = ReplacingMergeTree(version)
ORDER BY (item, key)`

// StateViewDDL has ClickHouse derive the current state from the history:
// every row inserted into events is inserted into current_state by the
// same INSERT, so the sink sends each record once. (Rows the history holds
// already are written to current_state directly when a replay or a retry
// after a failed write restores the state.)
const StateViewDDL = `CREATE MATERIALIZED VIEW IF NOT EXISTS current_state_mv TO current_state AS
SELECT item, key, kafka_offset AS version, toUInt8(op = 'DELETE') AS deleted, op, source_department, event_time, landed_time, data
FROM events`

// CurrentDDL is the analysts' view of the current state.
const CurrentDDL = `CREATE VIEW IF NOT EXISTS current AS
SELECT item, key, op, source_department, event_time, landed_time, data
FROM current_state FINAL
WHERE deleted = 0`

const stateInsertSQL = `INSERT INTO current_state (item, key, version, deleted, op, source_department, event_time, landed_time, data)`

const insertSQL = `INSERT INTO events (item, kafka_partition, kafka_offset, key, op, event_id,
  source_department, source_system, source_adapter, event_time, event_time_ms,
  publish_time, publish_time_ms, landed_time, landed_time_ms, data)`

// Sink appends change events to ClickHouse.
type Sink struct {
	name string
	log  *slog.Logger
	conn driver.Conn
	// typed says whether Prepare makes the items' typed views.
	typed bool
	// fence tags every insert the sink makes, so that a ledger read after a
	// crash waits for the inserts of the killed run (see fence).
	fence fence

	// next caches the ledger: the next offset per partition. After a failed
	// INSERT it is dirty (the block may have landed) and is read back.
	mu    sync.Mutex
	next  map[tp]int64
	dirty bool
}

type tp struct {
	topic string
	part  int32
}

// Config configures a Sink.
type Config struct {
	Name string // the sink's name (its consumer group's, its fence's)
	DSN  string // native protocol: clickhouse://user:password@host:9000/database
	Log  *slog.Logger
	// NoTypedViews skips the items' typed views (typed.go): two views an
	// item make a start with thousands of items slow.
	NoTypedViews bool
}

// Validate says what is wrong with the configuration (after its defaults).
func (cfg Config) Validate() error {
	if cfg.Name == "" || cfg.DSN == "" {
		return errors.New("chsink: a name and a DSN are required")
	}
	return nil
}

// defaults fills in what is not set.
func (cfg *Config) defaults() {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
}

// New connects to a ClickHouse server over the native protocol.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := clickhouse.ParseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("chsink: %w", err)
	}
	opts.MaxOpenConns = 4
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("chsink: %w", err)
	}
	return &Sink{name: cfg.Name, log: cfg.Log, conn: conn, typed: !cfg.NoTypedViews, fence: newFence(cfg.Log, conn, opts.Auth.Database, cfg.Name), next: map[tp]int64{}}, nil
}

// Name implements pipeline.Sink.
func (s *Sink) Name() string { return s.name }

// Accepts implements pipeline.Sink: analytics keeps every item.
func (s *Sink) Accepts(*catalog.Item) bool { return true }

// Close implements pipeline.Sink.
func (s *Sink) Close() error { return s.conn.Close() }

// Prepare implements pipeline.Sink: the tables, the scorecard views and the
// catalog mirror.
func (s *Sink) Prepare(ctx context.Context, items []*catalog.Item) error {
	ddls := append([]string{EventsDDL, DeadDDL, StateDDL, StateViewDDL, CurrentDDL, RejectsDDL, CatalogDDL, DisputesDDL}, ScorecardDDL...)
	for _, ddl := range append(ddls, DisputesViews...) {
		if err := s.conn.Exec(ctx, ddl); err != nil {
			return fmt.Errorf("chsink: %w", err)
		}
	}
	if len(items) == 0 {
		return nil
	}
	if s.typed {
		if err := s.ensureTypedViews(ctx, items); err != nil {
			return err
		}
	}
	b, err := s.conn.PrepareBatch(ctx, `INSERT INTO catalog_items (item, name, department, base, share, update_frequency, interval_seconds, version)`)
	if err != nil {
		return err
	}
	defer b.Abort() //nolint:errcheck
	version := uint64(time.Now().UnixNano())
	for _, it := range items {
		if err := b.Append(it.Topic(), it.Name, it.Source, it.Base, string(it.Share), it.UpdateFrequency,
			uint32(it.UpdateInterval().Seconds()), version); err != nil {
			return err
		}
	}
	return b.Send()
}

// Kind is the sink's kind in the bus's table of sinks (package sinks), and
// the name it runs under by default.
const Kind = "clickhouse"

// Landed implements pipeline.Locator: the change in the history (which
// keeps every one).
func (s *Sink) Landed(ctx context.Context, it *catalog.Item, eventID string) (pipeline.Landed, bool, error) {
	var l pipeline.Landed
	err := s.conn.QueryRow(ctx, "SELECT kafka_partition, kafka_offset, landed_time, key FROM events WHERE item = ? AND event_id = ? LIMIT 1",
		it.Topic(), eventID).Scan(&l.Partition, &l.Offset, &l.At, &l.Key)
	if errors.Is(err, sql.ErrNoRows) {
		return pipeline.Landed{}, false, nil
	}
	if err != nil {
		return pipeline.Landed{}, false, err
	}
	l.At = l.At.UTC()
	return l, true, nil
}

// Ledger implements pipeline.Ledgerer: the history's highest position per
// partition, plus one (without the fence: what has landed so far).
func (s *Sink) Ledger(ctx context.Context, it *catalog.Item) (map[int32]int64, error) {
	out := pipeline.Offsets{}
	if err := s.offsets(ctx, []string{it.Topic()}, out); err != nil {
		return nil, err
	}
	return out[it.Topic()], nil
}

// Offsets implements pipeline.Sink: the ledger is the highest offset landed.
//
// The topics are asked about a few hundred at a time: a query naming ten
// thousand items would pass ClickHouse's max_query_size (256 KiB).
func (s *Sink) Offsets(ctx context.Context, topics []string) (pipeline.Offsets, error) {
	out, err := s.ReadLedger(ctx, topics)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for t, parts := range out {
		for p, n := range parts {
			s.next[tp{t, p}] = n
		}
	}
	s.mu.Unlock()
	return out, nil
}

// ReadLedger implements pipeline.LedgerReader: the positions Offsets
// reads, without taking them as the sink's own (a position read while the
// runner's insert lands may be behind it already: taken as the sink's, it
// would have the next batch written twice).
func (s *Sink) ReadLedger(ctx context.Context, topics []string) (pipeline.Offsets, error) {
	if err := s.fence.wait(ctx); err != nil {
		return nil, err
	}
	out := pipeline.Offsets{}
	const chunk = 500
	for i := 0; i < len(topics); i += chunk {
		part := topics[i:min(i+chunk, len(topics))]
		if err := s.offsets(ctx, part, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Sink) offsets(ctx context.Context, topics []string, out pipeline.Offsets) error {
	rows, err := s.conn.Query(ctx, `SELECT item, kafka_partition, max(kafka_offset) FROM (
		SELECT item, kafka_partition, kafka_offset FROM events WHERE item IN (SELECT arrayJoin(?))
		UNION ALL
		SELECT item, kafka_partition, kafka_offset FROM dead_letters WHERE item IN (SELECT arrayJoin(?))
	) GROUP BY item, kafka_partition`, topics, topics)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var p int32
		var last int64
		if err := rows.Scan(&t, &p, &last); err != nil {
			return err
		}
		if out[t] == nil {
			out[t] = map[int32]int64{}
		}
		out[t][p] = last + 1
	}
	return rows.Err()
}

// Write implements pipeline.Sink: the batch's state rows, then its history
// as one INSERT block, then the positions of its dead-lettered records.
// Written in that order, a failure part-way leaves the ledger (the highest
// position written) at or behind what landed, never ahead of it.
func (s *Sink) Write(ctx context.Context, batch []pipeline.Record, landed time.Time) error {
	return classify(s.write(ctx, batch, landed))
}

// recordFaultCodes are ClickHouse's exceptions that blame the data: cannot
// parse, type mismatch, argument out of bound, cannot convert, string too large.
var recordFaultCodes = map[int32]bool{6: true, 27: true, 41: true, 53: true, 69: true, 70: true, 131: true}

// classify tells a refusal of the records from an outage.
func classify(err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && recordFaultCodes[ex.Code] {
		return &pipeline.RecordFault{Err: err}
	}
	return err
}

func (s *Sink) write(ctx context.Context, batch []pipeline.Record, landed time.Time) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	retried := s.dirty
	if s.dirty {
		if err := s.reload(ctx, batch); err != nil {
			return err
		}
		s.dirty = false
	}
	defer func() {
		if err != nil {
			s.dirty = true
		}
	}()
	recs := make([]pipeline.Record, 0, len(batch))
	var landedBefore []bool
	moved := map[tp]int64{}
	for _, r := range batch {
		k := tp{r.Item.Topic(), r.Partition}
		before := r.Offset < s.next[k]
		if before && !retried {
			continue // landed before
		}
		if !before {
			moved[k] = r.Offset + 1
		}
		recs, landedBefore = append(recs, r), append(landedBefore, before)
	}
	// A batch written again after a failure: what its history holds may
	// have landed without its state (the view's insert failed after the
	// history's), so the state rows of those are written again (the same
	// version: nothing changes when they had landed).
	if err := s.land(ctx, recs, func(i int) bool { return !landedBefore[i] }, landed); err != nil {
		return err
	}
	for k, v := range moved {
		s.next[k] = v
	}
	return nil
}

// land writes the history rows of the records for which inHistory is true
// (their current state follows by the view, StateViewDDL), the state rows of
// the others (the history holds them: a replay or a retry restores their
// state), then the dead-letter positions of those in the history. The
// history is the ledger, so a batch whose history landed is never written
// again, while re-inserting state rows (same version) changes nothing once
// merged. Each record is rendered once.
func (s *Sink) land(ctx context.Context, recs []pipeline.Record, inHistory func(i int) bool, landed time.Time) error {
	landedSec, landedMs := landed.Unix(), landed.UnixMilli()
	var h histRows
	var st stateRows
	var dead []pipeline.Record
	size := 0
	for i := range recs {
		if recs[i].Raw != nil {
			size += 2 * len(recs[i].Raw.Value) // JSON takes about twice the Avro
		}
	}
	buf := make([]byte, 0, size)
	hData, sData := make([]int, 0, len(recs)), make([]int, 0, len(recs)) // where each row's JSON ends in buf
	var err error
	for i := range recs {
		r := &recs[i]
		history := inHistory(i)
		e := r.Event
		if e == nil {
			if history && r.DeadLetter != "" { // a flag record leaves no row
				dead = append(dead, *r)
			}
			continue
		}
		if r.Cols != nil {
			buf, err = r.Cols.AppendJSON(buf, r.Row)
		} else {
			buf, err = schemas.AppendJSONValues(buf, r.Item, e.Data)
		}
		if err != nil {
			return fmt.Errorf("chsink: %s key %s: %w", r.Item.Code, e.Key, err)
		}
		deleted := uint8(0)
		if e.Op == schemas.OpDelete {
			deleted = 1
		}
		if !history {
			st.item, st.key, st.version = append(st.item, r.Item.Topic()), append(st.key, e.Key), append(st.version, r.Offset)
			st.deleted, st.op, st.dept = append(st.deleted, deleted), append(st.op, string(e.Op)), append(st.dept, e.Source.Department)
			st.eventSec, st.landedSec = append(st.eventSec, e.EventTime.Unix()), append(st.landedSec, landedSec)
			sData = append(sData, len(buf))
			hData = append(hData, -1)
			continue
		}
		h.item, h.part, h.off = append(h.item, r.Item.Topic()), append(h.part, r.Partition), append(h.off, r.Offset)
		h.key, h.op, h.id = append(h.key, e.Key), append(h.op, string(e.Op)), append(h.id, e.ID)
		h.dept, h.system, h.adapter = append(h.dept, e.Source.Department), append(h.system, e.Source.System), append(h.adapter, e.Source.Adapter)
		h.eventSec, h.eventMs = append(h.eventSec, e.EventTime.Unix()), append(h.eventMs, e.EventTime.UnixMilli())
		h.pubSec, h.pubMs = append(h.pubSec, e.PublishTime.Unix()), append(h.pubMs, e.PublishTime.UnixMilli())
		h.landedSec, h.landedMs = append(h.landedSec, landedSec), append(h.landedMs, landedMs)
		hData = append(hData, len(buf))
		sData = append(sData, -1)
	}
	// Every row's JSON is a substring of one string: one allocation a batch.
	all, from := string(buf), 0
	for k := range hData {
		end := max(hData[k], sData[k])
		if hData[k] >= 0 {
			h.data = append(h.data, all[from:end])
		} else {
			st.data = append(st.data, all[from:end])
		}
		from = end
	}
	if len(st.item) > 0 {
		if err := s.send(ctx, stateInsertSQL, st.item, st.key, st.version, st.deleted, st.op, st.dept, st.eventSec, st.landedSec, st.data); err != nil {
			return err
		}
	}
	if len(h.item) > 0 {
		if err := s.send(ctx, insertSQL, h.item, h.part, h.off, h.key, h.op, h.id, h.dept, h.system, h.adapter,
			h.eventSec, h.eventMs, h.pubSec, h.pubMs, h.landedSec, h.landedMs, h.data); err != nil {
			return err
		}
	}
	if len(dead) > 0 {
		return s.writeDead(ctx, dead, landed.Truncate(time.Second))
	}
	return nil
}

// histRows and stateRows are the columns of the rows of a batch: the
// history's (events) and, for a replay or a retry, the state's
// (current_state). DateTime columns take Unix seconds.
type histRows struct {
	item                               []string
	part                               []int32
	off                                []int64
	key, op, id, dept, system, adapter []string
	eventSec, eventMs, pubSec, pubMs   []int64
	landedSec, landedMs                []int64
	data                               []string
}

type stateRows struct {
	item, key           []string
	version             []int64
	deleted             []uint8
	op, dept            []string
	eventSec, landedSec []int64
	data                []string
}

// send inserts one block, column by column (clickhouse-go's columnar
// Append: no boxing of each value of each row).
func (s *Sink) send(ctx context.Context, insert string, cols ...any) error {
	b, err := s.conn.PrepareBatch(s.fence.tag(ctx), insert)
	if err != nil {
		return err
	}
	defer b.Abort() //nolint:errcheck
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return err
		}
	}
	return b.Send()
}

// WritesColumns implements pipeline.ColumnSink: the sink renders each
// record's JSON from the batch's columns.
func (s *Sink) WritesColumns() bool { return true }

// Replay implements pipeline.Replayer: the partition's records up to the
// ledger are read again; those missing from the history (or from the
// dead-letter positions) are inserted, and every state row is inserted again,
// which restores a damaged current_state and changes nothing otherwise
// (ReplacingMergeTree keeps one row per version). The ledger here is the
// history itself, so damage to the history may have moved it back: the
// replay goes up to the group's committed offset when that is further.
func (s *Sink) Replay(ctx context.Context, it *catalog.Item, partition int32, committed int64, fetch pipeline.Fetch) (int, error) {
	led, err := s.Offsets(ctx, []string{it.Topic()})
	if err != nil {
		return 0, err
	}
	until := max(led[it.Topic()][partition], committed)
	n := 0
	err = fetch(ctx, until, func(recs []pipeline.Record) error {
		if len(recs) == 0 {
			return nil
		}
		n += len(recs)
		have, err := s.positions(ctx, it, partition, recs[0].Offset, recs[len(recs)-1].Offset)
		if err != nil {
			return err
		}
		return s.land(ctx, recs, func(i int) bool { return !have[recs[i].Offset] }, time.Now())
	})
	return n, err
}

// positions lists the offsets of a partition range present in the history
// or among the dead-letter positions.
func (s *Sink) positions(ctx context.Context, it *catalog.Item, partition int32, lo, hi int64) (map[int64]bool, error) {
	rows, err := s.conn.Query(ctx, `SELECT kafka_offset FROM events WHERE item = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset <= ?
		UNION ALL SELECT kafka_offset FROM dead_letters WHERE item = ? AND kafka_partition = ? AND kafka_offset >= ? AND kafka_offset <= ?`,
		it.Topic(), partition, lo, hi, it.Topic(), partition, lo, hi)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var o int64
		if err := rows.Scan(&o); err != nil {
			return nil, err
		}
		out[o] = true
	}
	return out, rows.Err()
}

func (s *Sink) writeDead(ctx context.Context, dead []pipeline.Record, landed time.Time) error {
	b, err := s.conn.PrepareBatch(s.fence.tag(ctx), deadInsertSQL)
	if err != nil {
		return err
	}
	defer b.Abort() //nolint:errcheck
	for _, r := range dead {
		if err := b.Append(r.Item.Topic(), r.Partition, r.Offset, r.DeadLetter, landed); err != nil {
			return err
		}
	}
	return b.Send()
}

// reload reads the ledger of the batch's partitions back from the table.
func (s *Sink) reload(ctx context.Context, batch []pipeline.Record) error {
	topics := map[string]bool{}
	for _, r := range batch {
		topics[r.Item.Topic()] = true
	}
	list := make([]string, 0, len(topics))
	for t := range topics {
		list = append(list, t)
	}
	s.mu.Unlock()
	_, err := s.Offsets(ctx, list)
	s.mu.Lock()
	return err
}
