// Package analystdb gives a department's analysts their own ClickHouse
// database: the history, current state, typed views and scorecards of the
// items the department holds grants on, each as its grant sees it
// (package feed's Projection, the code the feeds, the lookups and the
// grant tables use: the approved fields only, those above the grant's
// grade masked, a masked key replaced by its pseudonym). The analysts'
// ClickHouse user may read that database only (package server/dbaccess),
// so the unmasked values never reach a table it can name.
//
// The sink is a chsink writing the projected items into that database:
// exactly once, its ledger the database's own history.
package analystdb

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/feed"
)

// Database is a department's analysts' database on the server whose bus
// database is busDB.
func Database(busDB, dept string) string { return busDB + "_analyst_" + dept }

// Config configures a department's analysts' sink.
type Config struct {
	Name string // in its fence and consumer group: analyst.<department>
	DSN  string // the analysts' database (Database)
	// Grants are the projections, one per item (feed.Grant's KeySecret set
	// as the feeds').
	Grants []feed.Grant
	Items  *catalog.Catalog
	Log    *slog.Logger
}

// Sink writes a department's projections of its granted items.
type Sink struct {
	inner *chsink.Sink
	proj  map[string]*feed.Projection // by item code
	name  string
}

// New connects to the analysts' database.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	s := &Sink{proj: map[string]*feed.Projection{}, name: cfg.Name}
	for _, g := range cfg.Grants {
		it := cfg.Items.Item(g.Item)
		if it == nil {
			return nil, fmt.Errorf("analystdb: no catalog item %s", g.Item)
		}
		s.proj[it.Code] = feed.Project(it, g)
	}
	inner, err := chsink.New(ctx, chsink.Config{Name: cfg.Name, DSN: cfg.DSN, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	s.inner = inner
	return s, nil
}

// Name implements pipeline.Sink.
func (s *Sink) Name() string { return s.name }

// Accepts implements pipeline.Sink: the granted items.
func (s *Sink) Accepts(it *catalog.Item) bool { return s.proj[it.Code] != nil }

// Prepare implements pipeline.Sink: the tables, and the typed views of the
// items as projected.
func (s *Sink) Prepare(ctx context.Context, _ []*catalog.Item) error {
	var items []*catalog.Item
	for _, p := range s.proj {
		items = append(items, p.Item)
	}
	return s.inner.Prepare(ctx, items)
}

// Offsets implements pipeline.Sink.
func (s *Sink) Offsets(ctx context.Context, topics []string) (pipeline.Offsets, error) {
	return s.inner.Offsets(ctx, topics)
}

// Write implements pipeline.Sink: each record as its item's grant sees it.
func (s *Sink) Write(ctx context.Context, batch []pipeline.Record, landed time.Time) error {
	out := make([]pipeline.Record, len(batch))
	for i, r := range batch {
		p := s.proj[r.Item.Code]
		if p == nil {
			return fmt.Errorf("analystdb %s: a record of %s", s.name, r.Item.Code)
		}
		r.Item, r.Raw = p.Item, nil // the record as read is not the grant's to see
		if r.Event != nil {
			ev := *r.Event
			ev.Key = p.Key(ev.Key)
			ev.Data = p.Apply(ev.Data)
			r.Event = &ev
		}
		out[i] = r
	}
	return s.inner.Write(ctx, out, landed)
}

// Close implements pipeline.Sink.
func (s *Sink) Close() error { return s.inner.Close() }

// ReadLedger implements pipeline.LedgerReader (the inner sink's).
func (s *Sink) ReadLedger(ctx context.Context, topics []string) (pipeline.Offsets, error) {
	return pipeline.ReadLedger(ctx, s.inner, topics)
}
