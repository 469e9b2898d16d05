package pgsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/schemas"
)

// Config configures a Sink.
type Config struct {
	Name string // the sink's name in the ledger and its consumer group's
	DSN  string
	Log  *slog.Logger
	// Bases limits the sink to these base databases (all four when empty).
	Bases []string
	// ThemesOnly makes a theme-database sink: only the items of Themes,
	// whatever base database they belong to.
	ThemesOnly bool
	// Themes are the theme databases to build (a schema each, with a view
	// per item and the theme's own views); their items land here even when
	// they belong to no base database.
	Themes []*catalog.Theme
}

// Sink writes items into one PostgreSQL database.
type Sink struct {
	name   string
	log    *slog.Logger
	pool   *pgxpool.Pool
	themes []*catalog.Theme
	cfg    Config
	known  map[string]*catalog.Item // every item prepared so far, by code
}

// Validate says what is wrong with the configuration (after its defaults).
func (cfg Config) Validate() error {
	if cfg.Name == "" || cfg.DSN == "" {
		return errors.New("pgsink: a name and a DSN are required")
	}
	return nil
}

// defaults fills in what is not set.
func (cfg *Config) defaults() {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
}

// New connects to the database.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("pgsink: %w", err)
	}
	pcfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pgsink: %w", err)
	}
	s := &Sink{name: cfg.Name, log: cfg.Log, pool: pool, cfg: cfg, themes: cfg.Themes, known: map[string]*catalog.Item{}}
	return s, nil
}

// Name implements pipeline.Sink.
func (s *Sink) Name() string { return s.name }

// Accepts implements pipeline.Sink: items of the sink's base databases and
// of its theme databases.
func (s *Sink) Accepts(it *catalog.Item) bool { return s.cfg.Holds(it) }

// Holds says whether a sink configured with cfg writes item it (its
// Accepts), for code that reads the database without a sink too.
func (cfg Config) Holds(it *catalog.Item) bool {
	for _, th := range cfg.Themes {
		if slices.Contains(th.Items, it.Code) {
			return true
		}
	}
	if it.Base == "" || cfg.ThemesOnly {
		return false
	}
	return len(cfg.Bases) == 0 || slices.Contains(cfg.Bases, it.Base)
}

// Close implements pipeline.Sink.
func (s *Sink) Close() error { s.pool.Close(); return nil }

// Prepare implements pipeline.Sink: the ledger and one table per item.
func (s *Sink) Prepare(ctx context.Context, items []*catalog.Item) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// Several sinks may start at once on one database: serialise DDL with a
	// session lock, held across the transactions below.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(7405563)"); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(7405563)") //nolint:errcheck
	if _, err := conn.Exec(ctx, ledgerDDL+";\n"+DisputesDDL); err != nil {
		return fmt.Errorf("pgsink: ledger: %w", err)
	}
	byCode := map[string]*catalog.Item{}
	for code, it := range s.known {
		byCode[code] = it
	}
	// What exists already, read once: a start with thousands of items must
	// not send thousands of statements that change nothing.
	have, err := existingColumns(ctx, conn, items)
	if err != nil {
		return err
	}
	idx, err := existingIndexes(ctx, conn, items)
	if err != nil {
		return err
	}
	var ddl []string
	var codes []string
	for _, it := range items {
		byCode[it.Code] = it
		if d := evolveDDL(it, have, idx); d != "" {
			ddl, codes = append(ddl, d), append(codes, it.Code)
		}
	}
	if len(ddl) > 0 {
		s.log.Info("pgsink: creating or evolving tables", "sink", s.name, "tables", len(ddl))
	}
	// Tables are created a hundred per transaction: one transaction for
	// thousands would hold locks beyond max_locks_per_transaction. With
	// thousands to make (a city's first start), two connections share the
	// chunks, the schemas made first so that no two make the same one.
	next := make(chan []int, len(ddl)/ddlChunk+1) // the chunks, as [from, to)
	for i := 0; i < len(ddl); i += ddlChunk {
		next <- []int{i, min(i+ddlChunk, len(ddl))}
	}
	close(next)
	work := func(c *pgxpool.Conn) error {
		for ch := range next {
			if err := applyDDL(ctx, c, ddl[ch[0]:ch[1]], codes[ch[0]:ch[1]]); err != nil {
				return err
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	var helperErr error
	if len(next) > 2 {
		if err := ensureSchemas(ctx, conn, items); err != nil {
			return err
		}
		if other, err := s.pool.Acquire(ctx); err == nil {
			wg.Go(func() {
				defer other.Release()
				helperErr = work(other)
			})
		}
	}
	err = work(conn)
	wg.Wait()
	if err = errors.Join(err, helperErr); err != nil {
		return err
	}
	if len(s.themes) > 0 {
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			for _, th := range s.themes {
				if err := themeDDL(ctx, tx, th, byCode); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	s.known = byCode
	return nil
}

// Kind is the sink's kind in the bus's table of sinks (package sinks), and
// the name it runs under by default.
const Kind = "postgres"

// Landed implements pipeline.Locator: the row the change made, while it
// is the key's current one.
func (s *Sink) Landed(ctx context.Context, it *catalog.Item, eventID string) (pipeline.Landed, bool, error) {
	d, n := it.Namespace()
	var l pipeline.Landed
	err := s.pool.QueryRow(ctx, fmt.Sprintf("SELECT _partition, _offset, _landed_at, %s::text FROM %s WHERE _event_id::text = $1",
		pgx.Identifier{it.Key}.Sanitize(), pgx.Identifier{d, n}.Sanitize()), eventID).Scan(&l.Partition, &l.Offset, &l.At, &l.Key)
	if errors.Is(err, pgx.ErrNoRows) {
		return pipeline.Landed{}, false, nil
	}
	if err != nil {
		return pipeline.Landed{}, false, err
	}
	l.At = l.At.UTC()
	return l, true, nil
}

// Ledger implements pipeline.Ledgerer.
func (s *Sink) Ledger(ctx context.Context, it *catalog.Item) (map[int32]int64, error) {
	return LedgerOf(ctx, s.pool, s.name, it.Topic())
}

// Querier is what reads the ledger: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// LedgerOf reads the ledger of sink name for topic (the next offset per
// partition) through q: in a transaction, consistently with the tables it
// reads (the snapshots' positions).
func LedgerOf(ctx context.Context, q Querier, name, topic string) (map[int32]int64, error) {
	rows, err := q.Query(ctx, "SELECT partition, next_offset FROM jutong.sink_offsets WHERE sink = $1 AND topic = $2", name, topic)
	if err != nil {
		return nil, fmt.Errorf("pgsink: ledger: %w", err)
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var p int32
		var n int64
		if err := rows.Scan(&p, &n); err != nil {
			return nil, err
		}
		out[p] = n
	}
	return out, rows.Err()
}

// Offsets implements pipeline.Sink.
func (s *Sink) Offsets(ctx context.Context, topics []string) (pipeline.Offsets, error) {
	rows, err := s.pool.Query(ctx, `SELECT topic, partition, next_offset FROM jutong.sink_offsets WHERE sink = $1 AND topic = ANY($2)`, s.name, topics)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := pipeline.Offsets{}
	for rows.Next() {
		var t string
		var p int32
		var next int64
		if err := rows.Scan(&t, &p, &next); err != nil {
			return nil, err
		}
		if out[t] == nil {
			out[t] = map[int32]int64{}
		}
		out[t][p] = next
	}
	return out, rows.Err()
}

type tp struct {
	topic string
	part  int32
}

// Write implements pipeline.Sink.
//
// A batch touching many items is written in several transactions of at
// most itemsPerTx items each: one transaction locking thousands of tables
// would run out of lock slots (max_locks_per_transaction). Each item is a
// topic of its own, so each transaction still moves the ledger of exactly
// the records it wrote.
func (s *Sink) Write(ctx context.Context, batch []pipeline.Record, landed time.Time) error {
	return classify(s.writeChunks(ctx, batch, landed))
}

// classify tells a refusal of the records (SQLSTATE class 22, data
// exception, such as a NUL byte in text; class 23, integrity constraint;
// 54000, a row or value too large) from an outage.
func classify(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23") || pe.Code == "54000") {
		return &pipeline.RecordFault{Err: err}
	}
	return err
}

func (s *Sink) writeChunks(ctx context.Context, batch []pipeline.Record, landed time.Time) error {
	const itemsPerTx = 200
	items := map[*catalog.Item]int{}
	for _, r := range batch {
		if _, ok := items[r.Item]; !ok {
			items[r.Item] = len(items) / itemsPerTx
		}
	}
	if len(items) <= itemsPerTx {
		return s.write(ctx, batch, landed)
	}
	chunks := make([][]pipeline.Record, (len(items)+itemsPerTx-1)/itemsPerTx)
	for _, r := range batch {
		c := items[r.Item]
		chunks[c] = append(chunks[c], r)
	}
	for _, c := range chunks {
		if err := s.write(ctx, c, landed); err != nil {
			return err
		}
	}
	return nil
}

// write writes a batch in one transaction.
func (s *Sink) write(ctx context.Context, batch []pipeline.Record, landed time.Time) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// Lock and read the ledger of the batch's partitions; what it passed is skipped.
	next := map[tp]int64{}
	var topics []string
	var parts []int32
	for _, r := range batch {
		k := tp{r.Item.Topic(), r.Partition}
		if _, ok := next[k]; !ok {
			next[k] = -1
			topics = append(topics, k.topic)
			parts = append(parts, k.part)
		}
	}
	rows, err := tx.Query(ctx, `SELECT o.topic, o.partition, o.next_offset FROM jutong.sink_offsets o
		JOIN unnest($2::text[], $3::int[]) AS b(topic, partition) USING (topic, partition)
		WHERE o.sink = $1 FOR UPDATE OF o`, s.name, topics, parts)
	if err != nil {
		return err
	}
	for rows.Next() {
		var k tp
		var n int64
		if err := rows.Scan(&k.topic, &k.part, &n); err != nil {
			rows.Close()
			return err
		}
		next[k] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	// Last change per key wins, per item; keep first-seen order for stable COPY.
	byItem := map[*catalog.Item]map[string]*pipeline.Record{}
	order := map[*catalog.Item][]string{}
	moved := map[tp]int64{}
	for i := range batch {
		r := &batch[i]
		k := tp{r.Item.Topic(), r.Partition}
		if r.Offset < next[k] {
			continue // already applied
		}
		moved[k] = max(moved[k], r.Offset+1)
		if r.Event == nil {
			continue // dead-lettered: only the ledger moves
		}
		m := byItem[r.Item]
		if m == nil {
			m = map[string]*pipeline.Record{}
			byItem[r.Item] = m
		}
		if _, seen := m[r.Event.Key]; !seen {
			order[r.Item] = append(order[r.Item], r.Event.Key)
		}
		m[r.Event.Key] = r
	}
	if len(moved) == 0 {
		return nil // the whole batch was applied before
	}
	q := &pgx.Batch{}
	for it, m := range byItem {
		if err := s.apply(ctx, tx, q, it, order[it], m, landed); err != nil {
			return err
		}
	}
	topics, parts = topics[:0], parts[:0]
	var offs []int64
	for k, n := range moved {
		topics, parts, offs = append(topics, k.topic), append(parts, k.part), append(offs, n)
	}
	q.Queue(`INSERT INTO jutong.sink_offsets (sink, topic, partition, next_offset, updated_at)
		SELECT $1, t, p, n, now() FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, n)
		ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at`,
		s.name, topics, parts, offs)
	if err := tx.SendBatch(ctx, q).Close(); err != nil {
		return fmt.Errorf("pgsink: %w", err)
	}
	return tx.Commit(ctx)
}

// ddlChunk is how many items' DDL goes in one transaction.
const ddlChunk = 100

// applyDDL runs items' DDL in one transaction, in one round trip (the
// simple protocol runs several statements); should that fail, item by item
// in a new one, to name the item.
func applyDDL(ctx context.Context, conn *pgxpool.Conn, ddl, codes []string) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, strings.Join(ddl, ";\n"))
		return err
	})
	if err == nil {
		return nil
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for k := range ddl {
			if _, err := tx.Exec(ctx, ddl[k]); err != nil {
				return fmt.Errorf("pgsink: table for %s: %w", codes[k], err)
			}
		}
		return nil
	})
}

// ensureSchemas makes the items' schemas (their domains) in one statement.
func ensureSchemas(ctx context.Context, conn *pgxpool.Conn, items []*catalog.Item) error {
	seen := map[string]bool{}
	var stmts []string
	for _, it := range items {
		if d, _ := it.Namespace(); !seen[d] {
			seen[d] = true
			stmts = append(stmts, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{d}.Sanitize())
		}
	}
	if _, err := conn.Exec(ctx, strings.Join(stmts, ";\n")); err != nil {
		return fmt.Errorf("pgsink: schemas: %w", err)
	}
	return nil
}

// WritesColumns implements pipeline.ColumnSink: large groups are copied
// from the batch's columns (binary COPY).
func (s *Sink) WritesColumns() bool { return true }

// Replay implements pipeline.Replayer. It holds the partition's ledger row
// locked (the pipeline waits) while it reads the partition from the replay's
// start up to the ledger and sets every key changed in that range to its
// last change there: since the table reflects exactly the records before the
// ledger, that is what the key must hold. The ledger does not move. The
// group's committed offset is not needed: the ledger is exact.
func (s *Sink) Replay(ctx context.Context, it *catalog.Item, partition int32, _ int64, fetch pipeline.Fetch) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	var until int64
	err = tx.QueryRow(ctx, `SELECT next_offset FROM jutong.sink_offsets WHERE sink = $1 AND topic = $2 AND partition = $3 FOR UPDATE`,
		s.name, it.Topic(), partition).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil // nothing landed yet: the pipeline delivers it all
	}
	if err != nil {
		return 0, err
	}
	last := map[string]*pipeline.Record{}
	var order []string
	n := 0
	err = fetch(ctx, until, func(recs []pipeline.Record) error {
		n += len(recs)
		for i := range recs {
			r := &recs[i]
			if r.Event == nil {
				continue
			}
			if _, seen := last[r.Event.Key]; !seen {
				order = append(order, r.Event.Key)
			}
			last[r.Event.Key] = r
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	q := &pgx.Batch{}
	if err := s.apply(ctx, tx, q, it, order, last, time.Now()); err != nil {
		return n, err
	}
	if err := tx.SendBatch(ctx, q).Close(); err != nil {
		return n, fmt.Errorf("pgsink: %w", err)
	}
	return n, tx.Commit(ctx)
}

// copyRows is the size from which an item's rows in a batch go through COPY
// into a staging table and a merge; smaller groups become one INSERT ...
// SELECT FROM unnest(...) queued with the batch's other statements, so that
// a batch touching many items (a city has thousands, most of them quiet)
// costs one round trip instead of five per item.
const copyRows = 1000

// apply writes the last change of each key of one item: deletes and small
// upserts are queued on q, large upserts are copied at once.
func (s *Sink) apply(ctx context.Context, tx pgx.Tx, q *pgx.Batch, it *catalog.Item, keys []string, m map[string]*pipeline.Record, landed time.Time) error {
	var deletes []string
	upserts := make([]*pipeline.Record, 0, len(keys))
	for _, k := range keys {
		if r := m[k]; r.Event.Op == schemas.OpDelete {
			deletes = append(deletes, k)
		} else {
			upserts = append(upserts, r)
		}
	}
	if len(deletes) > 0 {
		q.Queue(fmt.Sprintf("DELETE FROM %s WHERE %s = ANY($1)", tableName(it), pgx.Identifier{it.Key}.Sanitize()), deletes)
	}
	if len(upserts) == 0 {
		return nil
	}
	if len(upserts) < copyRows {
		rows, err := rowsOf(it, upserts, landed)
		if err != nil {
			return err
		}
		q.Queue(unnestSQL(it), byColumn(rows)...)
		return nil
	}
	const stage = "jutong_stage"
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (LIKE %s) ON COMMIT DROP", stage, tableName(it))); err != nil {
		return err
	}
	var err error
	crs, ok := copyRowsOf(it, upserts)
	if ok {
		err = copyColumns(ctx, tx, stage, it, crs, landed)
	}
	if !ok || errors.Is(err, errNotUUID) {
		// An event id the binary writer does not read: pgx sends the text.
		var rows [][]any
		if rows, err = rowsOf(it, upserts, landed); err == nil {
			_, err = tx.CopyFrom(ctx, pgx.Identifier{stage}, columns(it), pgx.CopyFromRows(rows))
		}
	}
	if err != nil {
		return fmt.Errorf("pgsink: copy %s: %w", it.Code, err)
	}
	if _, err := tx.Exec(ctx, mergeSQL(it, stage)); err != nil {
		return fmt.Errorf("pgsink: merge %s: %w", it.Code, err)
	}
	_, err = tx.Exec(ctx, "DROP TABLE "+stage)
	return err
}

// copyRowsOf gives each record its row in columns: the batch's own (a
// ColumnSink's batch), or columns made here from its event (a replay).
// False when an event holds a value of the wrong type for its field: pgx
// then sends the group, and PostgreSQL refuses it as before (the runner
// dead-letters the record).
func copyRowsOf(it *catalog.Item, recs []*pipeline.Record) ([]copyRow, bool) {
	out := make([]copyRow, len(recs))
	var own *schemas.Columns
	for i, r := range recs {
		if r.Cols != nil && r.Cols.Item == it {
			out[i] = copyRow{r.Cols, r.Row, r}
			continue
		}
		if own == nil {
			own = schemas.NewColumns(it)
		}
		ev := r.Event
		if r.Cols != nil {
			ev = r.Cols.Event(r.Row)
		}
		if err := own.AppendEvent(ev); err != nil {
			return nil, false
		}
		out[i] = copyRow{own, own.N - 1, r}
	}
	return out, true
}

func rowsOf(it *catalog.Item, recs []*pipeline.Record, landed time.Time) ([][]any, error) {
	rows := make([][]any, 0, len(recs))
	for _, r := range recs {
		row, err := rowValues(it, r, landed)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// byColumn turns rows into one array per column (unnestSQL's parameters).
func byColumn(rows [][]any) []any {
	cols := make([]any, len(rows[0]))
	for j := range cols {
		col := make([]any, len(rows))
		for i, row := range rows {
			col[i] = row[j]
		}
		cols[j] = col
	}
	return cols
}

func rowValues(it *catalog.Item, r *pipeline.Record, landed time.Time) ([]any, error) {
	row := make([]any, 0, len(it.Fields)+len(metaColumns))
	for j, f := range it.Fields {
		v := r.Data(j)
		if rat, ok := v.(*big.Rat); ok {
			n, err := numeric(rat, f.Scale)
			if err != nil {
				return nil, fmt.Errorf("pgsink: %s field %s: %w", it.Code, f.Name, err)
			}
			v = n
		}
		row = append(row, v)
	}
	e := r.Event
	return append(row, e.ID, string(e.Op), e.EventTime, e.PublishTime, landed, r.Partition, r.Offset), nil
}

// numeric converts an exact decimal to PostgreSQL numeric at scale.
func numeric(r *big.Rat, scale int) (pgtype.Numeric, error) {
	pow := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)
	scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(pow))
	if !scaled.IsInt() {
		return pgtype.Numeric{}, errors.New("decimal has more places than the column's scale")
	}
	return pgtype.Numeric{Int: new(big.Int).Set(scaled.Num()), Exp: int32(-scale), Valid: true}, nil
}
