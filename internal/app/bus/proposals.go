package bus

import (
	"context"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/httpmetrics"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/topics"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/proposals"
)

// openProposals reads the catalog's approved versions (package proposals)
// and makes the bus run the catalog with them: the files', every approved
// proposal on top.
func (b *Bus) openProposals(ctx context.Context) (err error) {
	b.Proposals, err = proposals.Open(ctx, proposals.Config{Catalog: b.cfg.Catalog, Kafka: b.kopts, Apply: b.applyVersion,
		Now: b.cfg.Now, Log: b.cfg.Log.With("component", "proposals")})
	if err != nil {
		return err
	}
	b.onClose("proposals", func(context.Context) error { b.Proposals.Close(); return nil })
	b.cfg.Catalog = b.Proposals.Catalog()
	return nil
}

// applyVersion applies an approved version at once where it can while
// the bus runs: the item's topic (created, or its settings changed) and
// its schema registered. The door, the sinks (tables, views), the feeds and
// the ACLs take the new version at the next start (docs/catalog.md).
func (b *Bus) applyVersion(ctx context.Context, cat *catalog.Catalog, it *catalog.Item) error {
	admin, err := kafkaconn.NewClient(b.kopts)
	if err != nil {
		return err
	}
	defer admin.Close()
	scope := &catalog.Catalog{TopicDefaults: cat.TopicDefaults, Items: []*catalog.Item{it}}
	if _, err := topics.Ensure(ctx, kadm.NewClient(admin), scope); err != nil {
		return fmt.Errorf("topic %s: %w", it.Topic(), err)
	}
	s, err := schemas.For(it)
	if err != nil {
		return err
	}
	rc, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		return err
	}
	if _, err := rc.RegisterSchema(ctx, it.Subject(), sr.Schema{Schema: s.JSON, Type: sr.TypeAvro}, -1, -1); err != nil {
		return fmt.Errorf("register %s: %w", it.Subject(), err)
	}
	return nil
}

// serveProposals adds the proposals to the API (officers' tokens).
func (b *Bus) serveProposals(mux *http.ServeMux) error {
	h, err := httpmetrics.Wrap(proposals.Handler(b.Proposals, b.Officers, b.cfg.Log.With("component", "proposals")), b.Metrics, "proposals")
	if err != nil {
		return err
	}
	for _, route := range []string{"/v1/proposals", "/v1/proposals/", "/v1/catalog/items/"} {
		mux.Handle(route, h)
	}
	return nil
}
