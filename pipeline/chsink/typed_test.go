package chsink_test

import (
	"context"
	"encoding/json"
	"math/big"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/audit"
)

// TestAnalyticsQueries: the typed views hold each item's current state and
// history with the catalog's types (decimals exact, NULL where a record has
// no value), and every query of docs/analytics.md runs and answers.
func TestAnalyticsQueries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cat, _ := catalog.Sample()
	dsn := testenv.ClickHouse(t)
	s, err := chsink.New(ctx, chsink.Config{Name: "clickhouse", DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx, cat.Items); err != nil {
		t.Fatal(err)
	}
	live := map[string]map[string]*schemas.Event{}
	for i, code := range []string{"legal_person.enterprise_registration", "population.resident_registration"} {
		it := cat.Item(code)
		g := synth.New(it, uint64(40+i), time.Now())
		g.DeleteEvery = 10
		live[code] = map[string]*schemas.Event{}
		var batch []pipeline.Record
		for n := 0; n < 60; n++ {
			ev := g.Next()
			ev.Source.Department = it.Source
			ev.PublishTime = ev.EventTime.Add(time.Second)
			batch = append(batch, pipeline.Record{Item: it, Partition: 0, Offset: int64(n), Event: ev})
			if ev.Op == schemas.OpDelete {
				delete(live[code], ev.Key)
			} else {
				live[code][ev.Key] = ev
			}
		}
		if err := s.Write(ctx, batch, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	ch := testenv.ClickHouseConn(t, dsn)
	ent := live["legal_person.enterprise_registration"]
	capital, noApproval := new(big.Rat), uint64(0)
	for _, ev := range ent {
		capital.Add(capital, ev.Data["registered_capital"].(*big.Rat))
		if ev.Data["approved_at"] == nil {
			noApproval++
		}
	}
	var n, nulls uint64
	var sum string
	if err := ch.QueryRow(ctx, "SELECT count(), toString(sum(registered_capital)), countIf(isNull(approved_at)) FROM legal_person_enterprise_registration").Scan(&n, &sum, &nulls); err != nil {
		t.Fatal(err)
	}
	if want := capital.FloatString(4); int(n) != len(ent) || strings.TrimRight(strings.TrimRight(sum, "0"), ".") != strings.TrimRight(strings.TrimRight(want, "0"), ".") || nulls != noApproval {
		t.Errorf("typed current state: %d keys, capital %s, %d without approval; want %d, %s, %d", n, sum, nulls, len(ent), want, noApproval)
	}
	var hist, deletes uint64
	if err := ch.QueryRow(ctx, "SELECT count(), countIf(_op = 'DELETE' AND isNull(name)) FROM legal_person_enterprise_registration_history").Scan(&hist, &deletes); err != nil {
		t.Fatal(err)
	}
	if hist != 60 || deletes == 0 {
		t.Errorf("typed history: %d events (want 60), %d deletes without data", hist, deletes)
	}
	var types string
	if err := ch.QueryRow(ctx, "SELECT toTypeName(registered_capital) || ' ' || toTypeName(established_on) || ' ' || toTypeName(employees) FROM legal_person_enterprise_registration LIMIT 1").Scan(&types); err != nil {
		t.Fatal(err)
	}
	if types != "Nullable(Decimal(38, 4)) Nullable(Date) Nullable(Int64)" {
		t.Errorf("column types: %s", types)
	}

	// A field added to the catalog: the item's views are made again with it.
	it := cat.Item("legal_person.enterprise_registration")
	evolved := it.WithFields(append(slices.Clone(it.Fields), &catalog.Field{Name: "extra_note", Title: "备注", Type: catalog.TypeString}))
	if err := s.Prepare(ctx, []*catalog.Item{evolved}); err != nil {
		t.Fatal(err)
	}
	var extra uint64
	if err := ch.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND name = 'extra_note'").Scan(&extra); err != nil || extra != 2 {
		t.Errorf("after a field was added, %d typed views have it (%v), want 2", extra, err)
	}

	// The audit table the bus copies the trail into (its queries are in the doc too).
	if err := ch.Exec(ctx, audit.TableDDL); err != nil {
		t.Fatal(err)
	}
	ab, err := ch.PrepareBatch(ctx, audit.InsertSQL)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(audit.Event{Time: time.Now(), Kind: audit.DBRead, Department: "health", Group: "clickhouse jutong_analyst_health",
		Records: 3, Keys: []string{"population_resident_registration"}, Detail: "clickhouse: 3 rows read: SELECT citizen_id FROM population_resident_registration LIMIT 3"})
	if err := ab.Append(append(audit.Row(rec, time.Now()), int32(0), int64(0))...); err != nil {
		t.Fatal(err)
	}
	if err := ab.Send(); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/analytics.md")
	if err != nil {
		t.Fatal(err)
	}
	queries := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	if len(queries) < 4 {
		t.Fatalf("docs/analytics.md has %d queries", len(queries))
	}
	for _, q := range queries {
		rows, err := ch.Query(ctx, q[1])
		if err != nil {
			t.Errorf("%s: %v", q[1], err)
			continue
		}
		got := 0
		for rows.Next() {
			got++
		}
		rows.Close()
		if got == 0 {
			t.Errorf("no rows: %s", q[1])
		}
	}
}
