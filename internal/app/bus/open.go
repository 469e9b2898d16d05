package bus

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"

	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/open"
)

// serveOpen adds the open system to the API (no login: the public's): the
// portal, the CKAN-shaped API, DCAT and the downloads, with the releases
// refreshed every OpenEvery from the PostgreSQL base databases.
func (b *Bus) serveOpen(ctx, rctx context.Context, mux *http.ServeMux) error {
	if b.cfg.PostgresDSN == "" {
		return nil
	}
	db, err := b.pg(ctx)
	if err != nil {
		return err
	}
	dir := b.cfg.DataDir
	if dir == "" {
		dir = b.cfg.SecretsDir
	}
	if dir == "" {
		return nil // nowhere to keep releases
	}
	b.releases = &open.Releaser{Catalog: b.cfg.Catalog, DB: db, Sink: pgsink.Kind, Dir: filepath.Join(dir, "open"), Log: b.cfg.Log.With("component", "open"),
		Released: func(ctx context.Context, rel *open.Release) {
			if err := b.audit.Write(ctx, audit.Event{Kind: open.Released, Item: rel.Item, Actor: "jutong", Records: int64(rel.Rows), Detail: "release " + rel.ID}); err != nil {
				b.cfg.Log.Warn("open release not audited", "item", rel.Item, "err", err)
			}
		}}
	b.open = &open.Server{Catalog: b.cfg.Catalog, Releases: b.releases, Log: b.cfg.Log.With("component", "open"),
		Applicants: &open.Applicants{DB: db}, AuthorityToken: b.Officers[b.cfg.Catalog.Authority],
		Audit: func(ctx context.Context, e audit.Event) error { return b.audit.Write(ctx, e) }}
	h := b.open.Handler()
	for _, route := range []string{"/{$}", "/dataset/", "/static/", "/api/3/", "/catalog.jsonld", "/open/"} {
		mux.Handle(route, h)
	}
	b.tick(rctx, every(b.cfg.OpenEvery), "open releases", b.cfg.Log, func(ctx context.Context) error {
		_, err := b.releases.Refresh(ctx)
		return errors.Join(err, b.open.FlushCalls(ctx))
	})
	return nil
}

// FlushOpenCalls audits the open API's metadata calls counted so far (the
// bus does it every OpenEvery).
func (b *Bus) FlushOpenCalls(ctx context.Context) error {
	if b.open == nil {
		return nil
	}
	return b.open.FlushCalls(ctx)
}

// RefreshOpen makes the open releases of the items that changed since
// their last one, now (the bus does it every OpenEvery), and returns how
// many it made.
func (b *Bus) RefreshOpen(ctx context.Context) (int, error) {
	if b.releases == nil {
		return 0, nil
	}
	return b.releases.Refresh(ctx)
}

// PortalURL is where the open portal is served ("" when it is not).
func (b *Bus) PortalURL() string {
	if b.open == nil {
		return ""
	}
	return b.APIURL() + "/"
}
