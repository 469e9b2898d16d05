package bus

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/internal/app/grants"
	"github.com/jutong/jutong/internal/app/landing"
	"github.com/jutong/jutong/internal/httpmetrics"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/dispute"
	"github.com/jutong/jutong/server/signed"
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
	b.landing = landing.New(landing.Config{Catalog: b.cfg.Catalog, Kafka: b.kopts, Decoder: b.pcfg.Decoder,
		Sinks: func(it *catalog.Item) []pipeline.Sink {
			var out []pipeline.Sink
			for _, s := range b.sinks {
				if s.Accepts(it) {
					out = append(out, s)
				}
			}
			for _, s := range b.feeds.Sinks(it.Code) {
				out = append(out, s)
			}
			return out
		}})
	log := b.cfg.Log.With("component", "dispute")
	b.Disputes, err = dispute.Open(ctx, dispute.Config{
		Catalog: b.cfg.Catalog, Kafka: b.kopts, Registry: b.RegistryOpts(), Audit: b.audit, DB: db, Now: b.cfg.Now, Log: log,
		Landing: b.landing.Receipts, Change: b.changeKey,
		MayRead: func(dept, item string) bool { return len(b.Control.GrantsOn(dept, item)) > 0 },
		Delivers: func(dept, item, field string) bool {
			it := b.cfg.Catalog.Item(item)
			for _, g := range b.Control.GrantsOn(dept, item) {
				if it != nil && feed.Project(it, grants.FeedGrant(g)).Delivers(field) {
					return true
				}
			}
			return false
		},
		Feeds: func(item string) []dispute.FlagTopic {
			var out []dispute.FlagTopic
			for _, s := range b.feeds.Sinks(item) {
				out = append(out, feedFlags(s))
			}
			return out
		},
	})
	if err != nil {
		return err
	}
	b.onClose("disputes", func(context.Context) error { b.Disputes.Close(); return nil })
	b.disputesRef.Store(b.Disputes)
	// The feeds started first: their flags topics now.
	for _, it := range b.cfg.Catalog.Items {
		for _, s := range b.feeds.Sinks(it.Code) {
			b.feedStarted(ctx, s)
		}
	}
	b.Metrics.MustRegister(b.Disputes.Collector())
	b.tick(rctx, every(b.cfg.ControlEvery), "dispute tick (receipts, escalation)", log, b.Disputes.Tick)
	// A correction closes its dispute within seconds of landing everywhere,
	// not at the next minute's tick.
	b.tick(rctx, min(every(b.cfg.ControlEvery), 2*time.Second), "dispute receipts", log, b.Disputes.Land)
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
func (b *Bus) serveDisputes(mux *http.ServeMux) error {
	h, err := httpmetrics.Wrap(signed.Handler(b.auditKey, dispute.Handler(b.Disputes, b.Officers, b.cfg.Log.With("component", "dispute"))), b.Metrics, "dispute")
	if err != nil {
		return err
	}
	mux.Handle("/v1/disputes", h)
	mux.Handle("/v1/disputes/", h)
	return nil
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
		b.onClose("PostgreSQL pool (lookups, disputes, roles, open releases)", func(context.Context) error { p.Close(); return nil })
	}
	return b.lookupDB, nil
}

// feedFlags is the flags topic of a feed, as the disputes write it.
func feedFlags(s *feed.Sink) dispute.FlagTopic {
	return dispute.FlagTopic{Topic: s.FlagsTopic(), Key: s.FlagKey, Fields: s.FlagFields}
}

// feedStarted brings a feed's flags topic in line with the open disputes
// (a feed started before the disputes opened is done when they open).
func (b *Bus) feedStarted(ctx context.Context, s *feed.Sink) {
	d := b.disputesRef.Load()
	if d == nil {
		return
	}
	if err := d.ReconcileFlags(ctx, s.Item(), feedFlags(s)); err != nil {
		b.cfg.Log.Warn("a feed's flags topic could not be brought in line with the open disputes", "topic", s.FlagsTopic(), "err", err)
	}
}

// changeKey says which record a change the door accepted is of: the door
// knows where it put it, and the record there says.
func (b *Bus) changeKey(ctx context.Context, item, eventID string) (string, bool, error) {
	it := b.cfg.Catalog.Item(item)
	if it == nil || b.door == nil {
		return "", false, nil
	}
	pos, ok := b.door.Accepted(item, eventID)
	if !ok {
		return "", false, nil
	}
	ev, err := b.landing.Fetch(it)(ctx, pos.Partition, pos.Offset)
	if err != nil {
		return "", false, err
	}
	return ev.Key, true, nil
}
