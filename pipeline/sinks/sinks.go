// Package sinks is the table of the bus's sink kinds: for each, its name
// (its pipeline's, its ledger's, its consumer group's), the setting that
// turns it on (its database's DSN, a flag and an environment variable) and
// its constructor. The bus runs a pipeline for every kind given a DSN;
// `jutong sink replay --sink KIND` opens a kind by name. A new sink is its
// package (a pipeline.Sink, with pipeline.Locator and Ledgerer for the disputes'
// receipts and pipeline.Replayer for repairs) and one line in kinds.
package sinks

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/pgsink"
)

// Kind is a kind of sink.
type Kind struct {
	Name string
	// Flag and Env name the setting of its database (a DSN): the flag of
	// dev, demo, serve and sink replay, and its environment variable.
	Flag, Env string
	Usage     string
	New       func(ctx context.Context, o Options) (pipeline.Sink, error)
}

// Options are what a kind's constructor gets.
type Options struct {
	Name    string // the sink's name: default the kind's
	DSN     string
	Catalog *catalog.Catalog
	// NoTypedViews skips ClickHouse's typed views of the items.
	NoTypedViews bool
	Log          *slog.Logger
}

// kinds is the table, in the order the bus starts them; read only.
var kinds = []Kind{
	{Name: pgsink.Kind, Flag: "postgres-dsn", Env: "JUTONG_POSTGRES_DSN",
		Usage: "PostgreSQL: the base and theme databases (current state), the lookups' and disputes' flags",
		New: func(ctx context.Context, o Options) (pipeline.Sink, error) {
			return pgsink.New(ctx, pgsink.Config{Name: o.Name, DSN: o.DSN, Themes: o.Catalog.Themes, Log: o.Log})
		}},
	{Name: chsink.Kind, Flag: "clickhouse-dsn", Env: "JUTONG_CLICKHOUSE_DSN",
		Usage: "ClickHouse (native protocol): every change, the current state, the scorecards, the audit trail",
		New: func(ctx context.Context, o Options) (pipeline.Sink, error) {
			return chsink.New(ctx, chsink.Config{Name: o.Name, DSN: o.DSN, NoTypedViews: o.NoTypedViews, Log: o.Log})
		}},
}

// Kinds lists the kinds, in the order the bus starts them.
func Kinds() []Kind { return slices.Clone(kinds) }

// Lookup returns the kind of that name.
func Lookup(name string) (Kind, bool) {
	i := slices.IndexFunc(kinds, func(k Kind) bool { return k.Name == name })
	if i < 0 {
		return Kind{}, false
	}
	return kinds[i], true
}

// Names lists the kinds' names.
func Names() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.Name
	}
	return out
}

// Open makes a sink of the kind named, for o (o.Name defaults to the
// kind's).
func Open(ctx context.Context, name string, o Options) (pipeline.Sink, error) {
	k, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("sinks: no sink kind %q (kinds: %s)", name, strings.Join(Names(), ", "))
	}
	if o.DSN == "" {
		return nil, fmt.Errorf("sinks: %s needs --%s (%s)", name, k.Flag, k.Env)
	}
	if o.Name == "" {
		o.Name = k.Name
	}
	return k.New(ctx, o)
}
