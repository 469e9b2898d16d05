package pgsink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/pgsink"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestEvolution: a field added to an item adds its column to the existing
// table, keeping the rows; preparing twice changes nothing.
func TestEvolution(t *testing.T) {
	ctx := context.Background()
	cat, _ := catalog.Sample()
	dsn := testenv.Postgres(t)
	s, err := pgsink.New(ctx, pgsink.Config{Name: "pg", DSN: dsn, Themes: cat.Themes})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var items []*catalog.Item
	for _, it := range cat.Items {
		if s.Accepts(it) {
			items = append(items, it)
		}
	}
	if err := s.Prepare(ctx, items); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(ctx, items); err != nil {
		t.Fatalf("preparing twice: %v", err)
	}
	if !s.Accepts(cat.Item("health.vaccination")) {
		t.Fatal("an item used by a theme but in no base database is not accepted")
	}
	it := cat.Item("legal_person.tax_credit_rating")
	evolved := it.WithFields(append(append([]*catalog.Field(nil), it.Fields...), &catalog.Field{Name: "tax_office", Title: "主管税务机关", Type: catalog.TypeString, Grade: 1}))
	if err := s.Prepare(ctx, []*catalog.Item{evolved}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := testenv.PostgresPool(t, dsn).QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = 'legal_person' AND table_name = 'tax_credit_rating' AND column_name = 'tax_office' AND is_nullable = 'YES'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the new column: %d %v", n, err)
	}
	// Room for updates in place (pgsink.FillFactor).
	var opts []string
	if err := testenv.PostgresPool(t, dsn).QueryRow(ctx, "SELECT reloptions FROM pg_class WHERE oid = 'legal_person.tax_credit_rating'::regclass").Scan(&opts); err != nil ||
		len(opts) != 1 || opts[0] != fmt.Sprintf("fillfactor=%d", pgsink.FillFactor) {
		t.Errorf("the item table's options: %v %v", opts, err)
	}
	// Every theme's views exist.
	for _, th := range cat.Themes {
		for _, v := range th.Views {
			if err := testenv.PostgresPool(t, dsn).QueryRow(ctx, "SELECT count(*) FROM "+th.Code+"."+v.Name).Scan(&n); err != nil {
				t.Errorf("view %s.%s: %v", th.Code, v.Name, err)
			}
		}
	}
}

// TestPrepareMany: a first start with hundreds of items (more than two
// transactions' worth, shared by two connections) makes every table, its
// schema made once whatever connection needs it; preparing again changes
// nothing.
func TestPrepareMany(t *testing.T) {
	ctx := context.Background()
	cat, _ := catalog.Sample()
	dsn := testenv.Postgres(t)
	s, err := pgsink.New(ctx, pgsink.Config{Name: "pg", DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := cat.Item("legal_person.enterprise_registration")
	var items []*catalog.Item
	for i := range 450 {
		it := *base
		it.Code = fmt.Sprintf("many%d.copy_%03d", i%4, i)
		items = append(items, &it)
	}
	for range 2 {
		if err := s.Prepare(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := testenv.PostgresPool(t, dsn).QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema LIKE 'many%' AND table_type = 'BASE TABLE'`).Scan(&n); err != nil || n != len(items) {
		t.Fatalf("%d tables made (%v), want %d", n, err, len(items))
	}
}
