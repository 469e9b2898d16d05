package bus

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/dispute"
	"github.com/jutong/jutong/feed"
	"github.com/jutong/jutong/internal/app/grants"
	"github.com/jutong/jutong/internal/app/landing"
	"github.com/jutong/jutong/internal/httpmetrics"
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
	b.landing = landing.New(landing.Config{Catalog: b.cfg.Catalog, ClickHouse: b.chLanding, Postgres: db,
		PostgresHolds: func(it *catalog.Item) bool {
			for _, s := range b.sinks {
				if s.Name() == "postgres" && s.Accepts(it) {
					return true
				}
			}
			return false
		},
		Feeds: func(it *catalog.Item) []string {
			var names []string
			for _, g := range b.Control.Grants() {
				if g.Item == it.Code && grants.Topic(it, g) != it.Topic() {
					names = append(names, feed.SinkName(grants.FeedGrant(g)))
				}
			}
			return names
		},
		Kafka: b.kopts, Decoder: b.pcfg.Decoder})
	log := b.cfg.Log.With("component", "dispute")
	b.Disputes, err = dispute.Open(ctx, dispute.Config{
		Catalog: b.cfg.Catalog, Kafka: b.kopts, Audit: b.audit, DB: db, Now: b.cfg.Now, Log: log, Landing: b.landing.Receipts, OnFlag: b.reflag,
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
	err := b.feeds.Reflag(ctx, item, key, b.landing.Latest, b.landing.Fetch(it))
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
