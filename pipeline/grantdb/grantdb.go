// Package grantdb gives a department's grant its own copy of an item in
// PostgreSQL: the item as the grant sees it (package feed's Projection, the
// code the feeds and the lookups use: the approved fields only, those graded
// above the grant masked, a masked key column holding the key's pseudonym,
// as the feed's record keys do), in a
// table of the department's schema (grant_<department>) that only the
// department's role may read (package server/dbaccess). The unmasked
// values never reach a table the role can name.
//
// The sink is a pgsink writing the projected item: exactly once, its own
// ledger (sink grant.<grant id>) in the same transactions as its rows.
package grantdb

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/pipeline/pgsink"
)

// Schema is the PostgreSQL schema of a department's grants.
func Schema(dept string) string { return "grant_" + dept }

// Table is the table (in Schema) of one grant of item: the item's domain
// and name, and the grant's id, within PostgreSQL's 63 bytes.
func Table(item, grantID string) string {
	d, n, _ := strings.Cut(item, ".")
	id := strings.TrimPrefix(grantID, "app-")
	if len(id) > 8 {
		id = id[:8]
	}
	name := d + "_" + n
	if len(name) > 63-len(id)-1 {
		name = name[:63-len(id)-1]
	}
	return name + "_" + id
}

// Config configures a grant's sink.
type Config struct {
	DSN   string
	Item  *catalog.Item // the item as published
	Grant feed.Grant    // KeySecret set as the feeds' (feed.GrantKeySecret)
	Log   *slog.Logger
}

// Sink writes one grant's projection of one item.
type Sink struct {
	inner    *pgsink.Sink
	proj     *feed.Projection
	src, dst *catalog.Item
	name     string
	// keyMasked: the key column holds the grant's pseudonym of the key
	// (the feed's record key), unique where masked forms may collide.
	keyMasked bool
}

// New connects to the database.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	proj := feed.Project(cfg.Item, cfg.Grant)
	dst := proj.Item.WithFields(proj.Item.Fields)
	dst.Code = Schema(cfg.Grant.Department) + "." + Table(cfg.Item.Code, cfg.Grant.ID)
	// Lookups by a field the grant does not see in clear would index it;
	// the themes are the base tables' business.
	dst.Lookup = slices.DeleteFunc(slices.Clone(dst.Lookup), func(f string) bool { return !proj.Delivers(f) })
	name := "grant." + cfg.Grant.ID
	inner, err := pgsink.New(ctx, pgsink.Config{Name: name, DSN: cfg.DSN, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	return &Sink{inner: inner, proj: proj, src: cfg.Item, dst: dst, name: name, keyMasked: slices.Contains(proj.Masked(), cfg.Item.Key)}, nil
}

// Name implements pipeline.Sink: grant.<grant id>.
func (s *Sink) Name() string { return s.name }

// Table is the schema-qualified table the sink writes.
func (s *Sink) Table() (schema, table string) {
	schema, table, _ = strings.Cut(s.dst.Code, ".")
	return schema, table
}

// Accepts implements pipeline.Sink: the grant's item only.
func (s *Sink) Accepts(it *catalog.Item) bool { return it.Code == s.src.Code }

// Prepare implements pipeline.Sink: the table of the projected item.
func (s *Sink) Prepare(ctx context.Context, _ []*catalog.Item) error {
	return s.inner.Prepare(ctx, []*catalog.Item{s.dst})
}

// Offsets implements pipeline.Sink: the ledger keeps the projected item's
// positions under the table's name; they are the item topic's.
func (s *Sink) Offsets(ctx context.Context, topics []string) (pipeline.Offsets, error) {
	if !slices.Contains(topics, s.src.Topic()) {
		return pipeline.Offsets{}, nil
	}
	in, err := s.inner.Offsets(ctx, []string{s.dst.Topic()})
	if err != nil {
		return nil, err
	}
	out := pipeline.Offsets{}
	if o, ok := in[s.dst.Topic()]; ok {
		out[s.src.Topic()] = o
	}
	return out, nil
}

// Write implements pipeline.Sink: each record projected as the grant sees it.
func (s *Sink) Write(ctx context.Context, batch []pipeline.Record, landed time.Time) error {
	out := make([]pipeline.Record, len(batch))
	for i, r := range batch {
		if r.Item == nil || r.Item.Code != s.src.Code {
			return fmt.Errorf("grantdb %s: a record of %v", s.name, r.Item)
		}
		r.Item, r.Raw = s.dst, nil // the record as read is not the grant's to see
		if r.Event != nil {
			ev := *r.Event
			ev.Key = s.proj.Key(ev.Key)
			ev.Data = s.proj.Apply(ev.Data)
			if s.keyMasked && ev.Data != nil {
				ev.Data[s.src.Key] = ev.Key
			}
			r.Event = &ev
		}
		out[i] = r
	}
	return s.inner.Write(ctx, out, landed)
}

// Close implements pipeline.Sink.
func (s *Sink) Close() error { return s.inner.Close() }
