package bus

import (
	"context"
	"net/http"

	"github.com/jutong/jutong/internal/httpmetrics"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/lookup"
)

// serveLookups adds the lookups to the API, over the PostgreSQL the sink
// writes (none without one).
func (b *Bus) serveLookups(ctx context.Context, mux *http.ServeMux) (err error) {
	if b.cfg.PostgresDSN == "" {
		return nil
	}
	db, err := b.pg(ctx)
	if err != nil {
		return err
	}
	svc, err := lookup.New(lookup.Config{
		Catalog: b.cfg.Catalog, DB: db, Disputes: b.Disputes.OpenOn, Rate: b.cfg.LookupRate, CursorSecret: lookup.CursorSecret(b.kafka.Password), // the instances of one bus share it
		Authenticate: func(user, pass string) (string, bool) { return b.Credentials.Department(b.cfg.Catalog, user, pass) },
		Grants: func(dept, item string) []lookup.Grant {
			var out []lookup.Grant
			for _, g := range b.Control.GrantsOn(dept, item) {
				out = append(out, lookup.Grant{ID: g.ID, Purpose: g.Purpose, Fields: g.Fields, Grade: g.Grade, Rate: g.LookupRate,
					KeySecret: feed.GrantKeySecret(b.feedKey, g.ID)})
			}
			return out
		},
		Audit:      func(ctx context.Context, e audit.Event) error { return b.audit.Write(ctx, e) },
		Now:        b.cfg.Now,
		Log:        b.cfg.Log.With("component", "lookup"),
		Registerer: b.Metrics,
		Registry:   b.RegistryOpts(),
	})
	if err != nil {
		return err
	}
	h, err := httpmetrics.Wrap(svc.Handler(), b.Metrics, "lookup")
	if err != nil {
		return err
	}
	mux.Handle("GET /v1/items/{code}/records/{key}", h)
	mux.Handle("GET /v1/items/{code}/records", h)
	mux.Handle("GET /v1/items/{code}/snapshot", h)
	return nil
}
