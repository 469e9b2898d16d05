package bus

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/dispute"
	"github.com/jutong/jutong/feed"
	"github.com/jutong/jutong/internal/app/grants"
	"github.com/jutong/jutong/internal/httpmetrics"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/schemas"
)

// startDisputes opens the disputes (flagged in the PostgreSQL the sink
// writes, when there is one) and escalates overdue ones at the control
// plane's pace.
func (b *Bus) startDisputes(ctx, rctx context.Context) (err error) {
	var db *pgxpool.Pool
	if b.cfg.PostgresDSN != "" {
		if db, err = b.pg(ctx); err != nil {
			return err
		}
	}
	if b.cfg.ClickHouseDSN != "" {
		opts, err := clickhouse.ParseDSN(b.cfg.ClickHouseDSN)
		if err != nil {
			return err
		}
		if b.chLanding, err = clickhouse.Open(opts); err != nil {
			return err
		}
	}
	log := b.cfg.Log.With("component", "dispute")
	b.Disputes, err = dispute.Open(ctx, dispute.Config{
		Catalog: b.cfg.Catalog, Kafka: b.kopts, Audit: b.audit, DB: db, Now: b.cfg.Now, Log: log, Landing: b.landing, OnFlag: b.reflag,
		MayRead: func(dept, item string) bool { return len(b.Control.GrantsOn(dept, item)) > 0 },
	})
	if err != nil {
		return err
	}
	b.disputesRef.Store(b.Disputes)
	b.Metrics.MustRegister(b.Disputes.Collector())
	b.tick(rctx, every(b.cfg.ControlEvery), "dispute tick (receipts, escalation)", log, func(ctx context.Context) error {
		if err := b.retryReflags(ctx); err != nil {
			return err
		}
		return b.Disputes.Tick(ctx)
	})
	return nil
}

// corrected is the door's word that a change naming a dispute was
// accepted: the dispute now waits for it to land (in the background: the
// door goes on).
func (b *Bus) corrected(id, dept, item, key, eventID string) {
	d := b.disputesRef.Load()
	if d == nil {
		b.cfg.Log.Warn("a correction arrived before the disputes opened; name it with jutong dispute correct", "dispute", id, "event", eventID)
		return
	}
	// Synchronously (a rare event): the gateway's requests run outside the
	// bus's wait group.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.CorrectRecord(ctx, id, dept, item, key, eventID); err != nil {
		b.cfg.Log.Warn("a change names a dispute it cannot correct", "dispute", id, "department", dept, "item", item, "event", eventID, "err", err)
	}
}

// serveDisputes adds the disputes to the API (officers' tokens).
func (b *Bus) serveDisputes(mux *http.ServeMux) {
	h := httpmetrics.Wrap(dispute.Handler(b.Disputes, b.Officers, b.cfg.Log.With("component", "dispute")), b.Metrics, "dispute")
	mux.Handle("/v1/disputes", h)
	mux.Handle("/v1/disputes/", h)
}

// pg is the bus's own pool on the PostgreSQL the sink writes (lookups,
// dispute flags), opened once.
func (b *Bus) pg(ctx context.Context) (*pgxpool.Pool, error) {
	if b.lookupDB == nil {
		p, err := pgxpool.New(ctx, b.cfg.PostgresDSN)
		if err != nil {
			return nil, err
		}
		b.lookupDB = p
	}
	return b.lookupDB, nil
}

// landing says where a correcting change has landed: ClickHouse's history
// gives its position (and ClickHouse's receipt), PostgreSQL's ledger says
// whether the sink has passed it. Feeds are not counted yet.
func (b *Bus) landing(ctx context.Context, item, eventID string) ([]dispute.Receipt, []string, error) {
	it := b.cfg.Catalog.Item(item)
	if it == nil {
		return nil, nil, nil
	}
	var receipts []dispute.Receipt
	var waiting []string
	var pos *dispute.Receipt
	if b.chLanding != nil {
		var part int32
		var off int64
		var landed time.Time
		err := b.chLanding.QueryRow(ctx, "SELECT kafka_partition, kafka_offset, landed_time FROM events WHERE item = ? AND event_id = ? LIMIT 1", item, eventID).Scan(&part, &off, &landed)
		switch {
		case err == nil:
			pos = &dispute.Receipt{Sink: "clickhouse", Topic: it.Topic(), Partition: part, Offset: off, Landed: landed.UTC()}
			receipts = append(receipts, *pos)
		case errors.Is(err, sql.ErrNoRows) || strings.Contains(err.Error(), "no rows"):
			waiting = append(waiting, "clickhouse")
		default:
			return nil, nil, err
		}
	}
	for _, s := range b.sinks {
		if s.Name() != "postgres" || !s.Accepts(it) {
			continue
		}
		db, err := b.pg(ctx)
		if err != nil {
			return nil, nil, err
		}
		r, err := pgLanded(ctx, db, it, eventID, pos)
		if err != nil {
			return nil, nil, err
		}
		if r == nil {
			waiting = append(waiting, "postgres")
		} else {
			receipts = append(receipts, *r)
		}
	}
	// The grants' masked feeds of the item: their ledger past the change.
	if pos != nil {
		r, w, err := b.feedsLanded(ctx, it, pos)
		if err != nil {
			return nil, nil, err
		}
		receipts, waiting = append(receipts, r...), append(waiting, w...)
	}
	return receipts, waiting, nil
}

// feedsLanded reads the feeds' ledger: a feed has the change once its
// position in the item's topic passed it.
func (b *Bus) feedsLanded(ctx context.Context, it *catalog.Item, pos *dispute.Receipt) ([]dispute.Receipt, []string, error) {
	var names []string
	for _, g := range b.Control.Grants() {
		if g.Item == it.Code && grants.Topic(it, g) != it.Topic() {
			names = append(names, "feed."+g.Department+"."+it.Code+"."+g.ID)
		}
	}
	if len(names) == 0 {
		return nil, nil, nil
	}
	next := map[string]int64{}
	err := kafkaconn.ReadAll(ctx, b.kopts, feed.LedgerTopic, func(r *kgo.Record) {
		if n, err := strconv.ParseInt(string(r.Value), 10, 64); err == nil {
			next[string(r.Key)] = n
		}
	})
	if err != nil {
		return nil, nil, err
	}
	var receipts []dispute.Receipt
	var waiting []string
	for _, name := range names {
		if next[name+"|"+it.Topic()+"|"+strconv.Itoa(int(pos.Partition))] > pos.Offset {
			receipts = append(receipts, dispute.Receipt{Sink: name, Topic: it.Topic(), Partition: pos.Partition, Offset: pos.Offset, Landed: time.Now().UTC()})
		} else {
			waiting = append(waiting, name)
		}
	}
	return receipts, waiting, nil
}

// pgLanded is PostgreSQL's receipt of a change: the row it made (still the
// current one), or, at a known position, the ledger past it.
func pgLanded(ctx context.Context, db *pgxpool.Pool, it *catalog.Item, eventID string, pos *dispute.Receipt) (*dispute.Receipt, error) {
	d, n := it.Namespace()
	var part int32
	var off int64
	var landed time.Time
	err := db.QueryRow(ctx, fmt.Sprintf("SELECT _partition, _offset, _landed_at FROM %s WHERE _event_id::text = $1", pgx.Identifier{d, n}.Sanitize()), eventID).Scan(&part, &off, &landed)
	if err == nil {
		return &dispute.Receipt{Sink: "postgres", Topic: it.Topic(), Partition: part, Offset: off, Landed: landed.UTC()}, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	if pos == nil {
		return nil, nil
	}
	var next int64
	err = db.QueryRow(ctx, "SELECT next_offset FROM jutong.sink_offsets WHERE sink = 'postgres' AND topic = $1 AND partition = $2", it.Topic(), pos.Partition).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && next <= pos.Offset) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Passed since, by a later change of the same key or a delete.
	return &dispute.Receipt{Sink: "postgres", Topic: it.Topic(), Partition: pos.Partition, Offset: pos.Offset, Landed: time.Now().UTC()}, nil
}

// reflag has the item's feeds re-emit a record whose dispute flag changed;
// what cannot be done yet (the current state behind a feed) is retried at
// every tick.
func (b *Bus) reflag(ctx context.Context, item, key string) {
	if b.cfg.PostgresDSN == "" {
		return // no current state to re-emit from
	}
	it := b.cfg.Catalog.Item(item)
	if it == nil {
		return
	}
	err := b.feeds.Reflag(ctx, item, key, b.latest, b.fetchFrom(it))
	b.reflagMu.Lock()
	defer b.reflagMu.Unlock()
	k := [2]string{item, key}
	if err != nil {
		if !errors.Is(err, feed.ErrBehind) {
			b.cfg.Log.Warn("a disputed record's flag could not be re-emitted into its feeds yet", "item", item, "err", err)
		}
		if b.reflagPending == nil {
			b.reflagPending = map[[2]string]bool{}
		}
		b.reflagPending[k] = true
		return
	}
	delete(b.reflagPending, k)
}

// retryReflags retries the re-emissions that could not be done.
func (b *Bus) retryReflags(ctx context.Context) error {
	b.reflagMu.Lock()
	var pending [][2]string
	for k := range b.reflagPending {
		pending = append(pending, k)
	}
	b.reflagMu.Unlock()
	for _, k := range pending {
		b.reflag(ctx, k[0], k[1])
	}
	return nil
}

// latest is where a key's latest change landed in PostgreSQL, and how far
// PostgreSQL has read that partition.
func (b *Bus) latest(ctx context.Context, item, key string) (int32, int64, bool, int64, error) {
	it := b.cfg.Catalog.Item(item)
	db, err := b.pg(ctx)
	if err != nil || it == nil {
		return 0, 0, false, 0, err
	}
	d, n := it.Namespace()
	var part int32
	var off, next int64
	err = db.QueryRow(ctx, fmt.Sprintf("SELECT _partition, _offset FROM %s WHERE %s = $1", pgx.Identifier{d, n}.Sanitize(), pgx.Identifier{it.Key}.Sanitize()), key).Scan(&part, &off)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, false, 0, nil
	}
	if err != nil {
		return 0, 0, false, 0, err
	}
	err = db.QueryRow(ctx, "SELECT next_offset FROM jutong.sink_offsets WHERE sink = 'postgres' AND topic = $1 AND partition = $2", it.Topic(), part).Scan(&next)
	if err != nil {
		return 0, 0, false, 0, err
	}
	return part, off, true, next, nil
}

// fetchFrom reads and decodes one record of an item's topic.
func (b *Bus) fetchFrom(it *catalog.Item) feed.Fetch {
	return func(ctx context.Context, partition int32, offset int64) (*schemas.Event, error) {
		cl, err := kafkaconn.NewClient(b.kopts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{it.Topic(): {partition: kgo.NewOffset().At(offset)}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("fetch %s/%d@%d: %w", it.Topic(), partition, offset, err)
			}
			for _, r := range fs.Records() {
				if r.Offset == offset {
					return b.pcfg.Decoder.DecodeItem(ctx, it, r.Value)
				}
			}
		}
	}
}
