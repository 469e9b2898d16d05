package chsink_test

import (
	"context"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/sinktest"
	"github.com/jutong/jutong/schemas"
)

// TestColumnsLand: records handed as columns (what the runner decodes) and
// as events (a replay) land alike, every catalog item, every field: the
// history's metadata are the event's, its data the JSON AppendJSONValues
// renders of the event's data.
func TestColumnsLand(t *testing.T) {
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
	type want struct {
		ev   *schemas.Event
		data string
	}
	wants := map[string]want{} // by event id
	var asCols, asEvents []pipeline.Record
	for i, it := range cat.Items {
		g := synth.New(it, uint64(i+1), time.Now())
		g.DeleteEvery = 5
		for n := 0; n < 20; n++ {
			ev := g.Next()
			ev.Source = schemas.Source{Department: it.Source, System: "系统 \"x\"", Adapter: "sdk"}
			ev.PublishTime = ev.EventTime.Add(time.Second).Truncate(time.Millisecond)
			if n%3 == 0 {
				synth.ClearOptional(it, ev.Data)
			}
			data, err := schemas.AppendJSONValues(nil, it, ev.Data)
			if err != nil {
				t.Fatal(err)
			}
			wants[ev.ID] = want{ev, string(data)}
			rec := pipeline.Record{Item: it, Partition: int32(n % 2), Offset: int64(n / 2), Event: ev}
			if n%2 == 0 {
				asCols = append(asCols, rec)
			} else {
				asEvents = append(asEvents, rec)
			}
		}
	}
	landed := time.Now()
	if err := s.Write(ctx, sinktest.AsColumns(t, asCols), landed); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, asEvents, landed); err != nil {
		t.Fatal(err)
	}
	conn := testenv.ClickHouseConn(t, dsn)
	rows, err := conn.Query(ctx, `SELECT event_id, item, key, op, source_department, source_system, source_adapter,
		event_time_ms, publish_time_ms, toUnixTimestamp(publish_time), landed_time_ms, data FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id, item, key, op, dept, system, adapter, data string
		var evMs, pubMs, landedMs int64
		var pubSec uint32
		if err := rows.Scan(&id, &item, &key, &op, &dept, &system, &adapter, &evMs, &pubMs, &pubSec, &landedMs, &data); err != nil {
			t.Fatal(err)
		}
		w, ok := wants[id]
		if !ok {
			t.Fatalf("a row of an event never written: %s", id)
		}
		seen++
		e := w.ev
		if key != e.Key || op != string(e.Op) || dept != e.Source.Department || system != e.Source.System || adapter != e.Source.Adapter ||
			evMs != e.EventTime.UnixMilli() || pubMs != e.PublishTime.UnixMilli() || int64(pubSec) != e.PublishTime.Unix() || landedMs != landed.UnixMilli() {
			t.Errorf("%s %s: metadata %s %s %s/%s/%s %d %d %d, want %+v", item, key, key, op, dept, system, adapter, evMs, pubMs, landedMs, e)
		}
		if data != w.data {
			t.Errorf("%s %s: data\n got %s\nwant %s", item, key, data, w.data)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != len(wants) {
		t.Fatalf("%d rows, want %d", seen, len(wants))
	}
}

// TestReadLedgerLeavesTheSink: reading the ledger from outside the runner
// (the bus's lag) never sets the sink back. Here the history is made to look
// behind what the sink wrote (as a read racing the runner's insert sees it):
// the sink still skips what it wrote, where taking the read position as its
// own would write it twice.
func TestReadLedgerLeavesTheSink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cat, _ := catalog.Sample()
	it := cat.Item("legal_person.enterprise_registration")
	dsn := testenv.ClickHouse(t)
	s, err := chsink.New(ctx, chsink.Config{Name: "clickhouse", DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx, []*catalog.Item{it}); err != nil {
		t.Fatal(err)
	}
	g := synth.New(it, 7, time.Now())
	var batch []pipeline.Record
	for n := 0; n < 20; n++ {
		batch = append(batch, pipeline.Record{Item: it, Partition: 0, Offset: int64(n), Event: g.Next()})
	}
	if err := s.Write(ctx, batch[:10], time.Now()); err != nil {
		t.Fatal(err)
	}
	conn := testenv.ClickHouseConn(t, dsn)
	if err := conn.Exec(ctx, "ALTER TABLE events DELETE WHERE kafka_offset >= 5"); err != nil {
		t.Fatal(err)
	}
	for range 100 { // the mutation is asynchronous
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 5 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	led, err := s.ReadLedger(ctx, []string{it.Topic()})
	if err != nil || led[it.Topic()][0] != 5 {
		t.Fatalf("the ledger read: %v %v, want 5", led, err)
	}
	if err := s.Write(ctx, batch, time.Now()); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 15 { // 0-4 and 10-19: what the sink wrote before was skipped
		t.Fatalf("%d rows after the second write, want 15 (the read set the sink back)", n)
	}
}
