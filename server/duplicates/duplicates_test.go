package duplicates

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestPlantedDuplicates: in the sample catalog, social insurance (hrss)
// and the residence permits (public security) both collect a citizen's
// name, as the resident registration (public security) does. The data
// planted in PostgreSQL makes social insurance's names the registration's
// (a duplicate collection) and the permits' different: measured, the
// planted duplicate ranks first, with its evidence; the other keeps its
// catalog evidence and no agreement.
func TestPlantedDuplicates(t *testing.T) {
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	cs := Candidates(cat)
	find := func(cs []Candidate, a, b, f string) (int, *Candidate) {
		for i := range cs {
			c := &cs[i]
			if (c.A.Item == a && c.B.Item == b || c.A.Item == b && c.B.Item == a) && c.A.Field == f && c.B.Field == f {
				return i, c
			}
		}
		return -1, nil
	}
	for _, pair := range [][2]string{{"population.resident_registration", "population.social_insurance"}, {"population.resident_registration", "population.residence_permit"}} {
		if _, c := find(cs, pair[0], pair[1], "name"); c == nil || c.Score < 5 {
			t.Fatalf("no catalog candidate %v name: %+v", pair, c)
		}
	}
	for _, c := range cs {
		if c.A.Item == "legal_person.enterprise_registration" && c.Kind == "citizen_id" {
			t.Fatalf("an enterprise is about its USCC, not its representative: %+v", c)
		}
	}
	ctx := context.Background()
	db, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE SCHEMA population`,
		`CREATE TABLE population.resident_registration (citizen_id text PRIMARY KEY, name text, division_code text)`,
		`CREATE TABLE population.social_insurance (citizen_id text PRIMARY KEY, name text)`,
		`CREATE TABLE population.residence_permit (permit_no text PRIMARY KEY, citizen_id text, name text, division_code text)`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 40; i++ {
		id, name := fmt.Sprintf("5001031980010100%02d", i), fmt.Sprintf("居民%02d", i)
		if _, err := db.Exec(ctx, `INSERT INTO population.resident_registration VALUES ($1, $2, '500103')`, id, name); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO population.social_insurance VALUES ($1, $2)`, id, name); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := db.Exec(ctx, `INSERT INTO population.residence_permit VALUES ($1, $2, $3, '500104')`, fmt.Sprintf("P%d", i), id, "其他"+name); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := Measure(ctx, db, cat, cs); err != nil {
		t.Fatal(err)
	}
	if cs[0].Data == nil || cs[0].A.Field != "name" || cs[0].Data.Subjects != 40 || cs[0].Data.Equal != 40 {
		t.Fatalf("first: %+v %+v", cs[0], cs[0].Data)
	}
	if i, c := find(cs, "population.resident_registration", "population.social_insurance", "name"); i != 0 {
		t.Fatalf("the planted duplicate ranks %d: %+v", i, c)
	}
	i, c := find(cs, "population.resident_registration", "population.residence_permit", "name")
	if c == nil || c.Data == nil || c.Data.Subjects != 20 || c.Data.Equal != 0 || i == 0 {
		t.Fatalf("the permits' names: %d %+v", i, c)
	}
	if _, c := find(cs, "population.resident_registration", "population.residence_permit", "division_code"); c == nil || c.Data == nil || c.Data.Equal != 0 {
		t.Fatalf("the permits' divisions: %+v", c)
	}
}

// TestCandidatesOf: one item's candidates are those of the whole catalog
// that involve it (what a proposal is shown), for every sample item.
func TestCandidatesOf(t *testing.T) {
	cat, _ := catalog.Sample()
	all := Candidates(cat)
	for _, it := range cat.Items {
		want := map[string]bool{}
		for _, c := range all {
			switch it.Code {
			case c.A.Item:
				want[c.A.Field+"~"+c.B.Item+"."+c.B.Field] = true
			case c.B.Item:
				want[c.B.Field+"~"+c.A.Item+"."+c.A.Field] = true
			}
		}
		got := CandidatesOf(cat, it)
		if len(got) != len(want) {
			t.Fatalf("%s: %d candidates, the catalog's %d", it.Code, len(got), len(want))
		}
		for _, c := range got {
			if c.A.Item != it.Code || !want[c.A.Field+"~"+c.B.Item+"."+c.B.Field] {
				t.Fatalf("%s: %+v is not the catalog's", it.Code, c)
			}
		}
	}
}
