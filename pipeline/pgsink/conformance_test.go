package pgsink_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/pipeline/sinktest"
)

// TestConformanceBase runs the sink conformance suite on the base-database
// sink: the items' own tables.
func TestConformanceBase(t *testing.T) {
	cat, _ := catalog.Sample()
	sinktest.Run(t, harness(t, cat, pgsink.Config{Name: "pg"},
		[]*catalog.Item{cat.Item("legal_person.enterprise_registration"), cat.Item("population.resident_registration")},
		func(it *catalog.Item) string {
			d, n := it.Namespace()
			return pgx.Identifier{d, n}.Sanitize()
		}))
}

// TestConformanceTheme runs it on a theme-database sink, reading through the
// theme's views: an item in no base database and one shared with a base.
func TestConformanceTheme(t *testing.T) {
	cat, _ := catalog.Sample()
	sinktest.Run(t, harness(t, cat, pgsink.Config{Name: "themes", Themes: cat.Themes, ThemesOnly: true},
		[]*catalog.Item{cat.Item("health.vaccination"), cat.Item("legal_person.enterprise_registration")},
		func(it *catalog.Item) string {
			d, n := it.Namespace()
			return pgx.Identifier{it.Themes()[0], d + "_" + n}.Sanitize()
		}))
}

func harness(t *testing.T, cat *catalog.Catalog, cfg pgsink.Config, items []*catalog.Item, relation func(*catalog.Item) string) sinktest.Harness {
	var all []*catalog.Item
	for _, it := range cat.Items {
		if cfg.Holds(it) {
			all = append(all, it)
		}
	}
	// The test reads what each sink wrote through a connection of its own.
	var mu sync.Mutex
	pools := map[pipeline.Sink]*pgxpool.Pool{}
	pool := func(s pipeline.Sink) *pgxpool.Pool {
		mu.Lock()
		defer mu.Unlock()
		return pools[s]
	}
	for _, it := range items {
		if !cfg.Holds(it) {
			t.Fatalf("the sink does not accept %s", it.Code)
		}
	}
	return sinktest.Harness{
		Items: items,
		All:   all,
		Database: func(t *testing.T) func() pipeline.Sink {
			c := cfg
			c.DSN = testenv.Postgres(t)
			db := testenv.PostgresPool(t, c.DSN)
			return func() pipeline.Sink {
				s, err := pgsink.New(context.Background(), c)
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				pools[s] = db
				mu.Unlock()
				return s
			}
		},
		State: func(ctx context.Context, s pipeline.Sink, it *catalog.Item) (map[string]int64, error) {
			rows, err := pool(s).Query(ctx, fmt.Sprintf("SELECT %s, _offset FROM %s",
				pgx.Identifier{it.Key}.Sanitize(), relation(it)))
			if err != nil {
				return nil, err
			}
			out := map[string]int64{}
			var k string
			var off int64
			_, err = pgx.ForEachRow(rows, []any{&k, &off}, func() error { out[k] = off; return nil })
			return out, err
		},
		Field: func(ctx context.Context, s pipeline.Sink, it *catalog.Item, key, field string) (string, error) {
			var v *string
			err := pool(s).QueryRow(ctx, fmt.Sprintf("SELECT %s::text FROM %s WHERE %s = $1",
				pgx.Identifier{field}.Sanitize(), relation(it), pgx.Identifier{it.Key}.Sanitize()), key).Scan(&v)
			if v == nil {
				return "", err
			}
			return *v, err
		},
	}
}
