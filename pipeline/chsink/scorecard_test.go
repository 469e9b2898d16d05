package chsink_test

import (
	"context"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
)

// TestScorecards: the scorecard views answer on ClickHouse 18.16 with the
// figures the events and rejects imply.
func TestScorecards(t *testing.T) {
	ctx := context.Background()
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
	it := cat.Item("legal_person.enterprise_registration")
	g := synth.New(it, 1, time.Now())
	var batch []pipeline.Record
	for i := 0; i < 30; i++ {
		ev := g.Next()
		ev.Source.Department = it.Source
		ev.PublishTime = ev.EventTime.Add(200 * time.Millisecond)
		if i%5 == 0 {
			ev.EventTime = ev.EventTime.Add(-60 * 24 * time.Hour) // backdated: counted, out of the quantiles
		}
		batch = append(batch, pipeline.Record{Item: it, Partition: 0, Offset: int64(i), Event: ev})
	}
	if err := s.Write(ctx, batch, time.Now()); err != nil {
		t.Fatal(err)
	}
	rb, err := testenv.ClickHouseConn(t, dsn).PrepareBatch(ctx, `INSERT INTO rejects (rejected_at, item, department, system, adapter, rule, field, reason, record_key, event_id, kafka_partition, kafka_offset)`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := rb.Append(time.Now(), it.Code, "market_supervision", "s", "sdk", "uscc.checksum", "uscc", "bad check character", "k", "e", int32(0), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rb.Send(); err != nil {
		t.Fatal(err)
	}
	var accepted, rejected uint64
	var rate float64
	if err := testenv.ClickHouseConn(t, dsn).QueryRow(ctx, `SELECT accepted, rejected, reject_rate FROM scorecard_reject_rate WHERE department = 'market_supervision'`).Scan(&accepted, &rejected, &rate); err != nil {
		t.Fatal(err)
	}
	if accepted != 30 || rejected != 10 || rate != 0.25 {
		t.Errorf("reject rate: %d accepted, %d rejected, rate %v", accepted, rejected, rate)
	}
	var events uint64
	if err := testenv.ClickHouseConn(t, dsn).QueryRow(ctx, `SELECT sum(events) FROM scorecard_volume WHERE department = 'market_supervision'`).Scan(&events); err != nil || events != 30 {
		t.Errorf("volume: %d %v", events, err)
	}
	var p50, p99 int64
	var backdated uint64
	if err := testenv.ClickHouseConn(t, dsn).QueryRow(ctx, `SELECT p50_publish_delay_ms, p99_publish_delay_ms, backdated FROM scorecard_latency WHERE department = 'market_supervision'`).Scan(&p50, &p99, &backdated); err != nil || p50 != 200 || p99 != 200 || backdated != 6 {
		t.Errorf("latency: p50 publish delay %v ms, p99 %v ms, %d backdated (want 200, 200, 6), %v", p50, p99, backdated, err)
	}
	if rules.BackdatedAfter != 2592000000*time.Millisecond {
		t.Errorf("scorecard_latency's 30 days are not rules.BackdatedAfter (%s)", rules.BackdatedAfter)
	}
	var n uint64
	if err := testenv.ClickHouseConn(t, dsn).QueryRow(ctx, `SELECT sum(rejects) FROM scorecard_rejects WHERE rule = 'uscc.checksum'`).Scan(&n); err != nil || n != 10 {
		t.Errorf("rejects by rule: %d %v", n, err)
	}
	rows, err := testenv.ClickHouseConn(t, dsn).Query(ctx, `SELECT item, on_time FROM scorecard_timeliness`)
	if err != nil {
		t.Fatal(err)
	}
	onTime := map[string]uint8{}
	for rows.Next() {
		var item string
		var ok uint8
		if err := rows.Scan(&item, &ok); err != nil {
			t.Fatal(err)
		}
		onTime[item] = ok
	}
	rows.Close()
	if len(onTime) != len(cat.Items) || onTime[it.Code] != 1 || onTime["population.births"] != 0 {
		t.Errorf("timeliness: %d items, %s on time %d, births on time %d", len(onTime), it.Code, onTime[it.Code], onTime["population.births"])
	}
}
