package bus

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/dispute"
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
	log := b.cfg.Log.With("component", "dispute")
	b.Disputes, err = dispute.Open(ctx, dispute.Config{
		Catalog: b.cfg.Catalog, Kafka: b.kopts, Audit: b.audit, DB: db, Now: b.cfg.Now, Log: log,
		MayRead: func(dept, item string) bool { return len(b.Control.GrantsOn(dept, item)) > 0 },
	})
	if err != nil {
		return err
	}
	b.wg.Go(func() {
		t := time.NewTicker(every(b.cfg.ControlEvery))
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if err := b.Disputes.Tick(rctx); err != nil && rctx.Err() == nil {
					log.Warn("dispute escalation failed", "err", err)
				}
			}
		}
	})
	return nil
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
