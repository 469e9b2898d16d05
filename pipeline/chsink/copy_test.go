package chsink_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/server/audit"
)

// TestCopyAddsColumns: an audit table made by an earlier version (without
// the lookups' purpose and keys) gets those columns when the copy starts,
// keeps its rows, and the new events land with theirs.
func TestCopyAddsColumns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := testenv.ClickHouse(t)
	ch := testenv.ClickHouseConn(t, dsn)
	old := strings.Replace(audit.TableDDL, "  purpose String,\n  keys Array(String),\n", "", 1)
	if old == audit.TableDDL {
		t.Fatal("the test's old DDL is the current one")
	}
	if err := ch.Exec(ctx, old); err != nil {
		t.Fatal(err)
	}
	batch, err := ch.PrepareBatch(ctx, "INSERT INTO audit (time, time_ms, kind, department, item, application, grant, actor, detail, records, window_start, window_end, consumer_group, kafka_partition, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	if err := batch.Append(now, int64(0), "granted", "health", "x", "a", "a", "big_data", "", int64(0), now, now, "", int32(0), int64(-1)); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, audit.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kopts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(kopts, kgo.DefaultProduceTopic(audit.Topic))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	b, _ := json.Marshal(audit.Event{Time: time.Now(), Kind: audit.Lookup, Department: "tax", Item: "legal_person.enterprise_registration",
		Grant: "app-1", Purpose: "纳税信用评价", Keys: []string{"91500000MA5U7CQ96X"}, Records: 1})
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- chsink.Copy(cctx, pipeline.Config{Kafka: kopts, Catalog: &catalog.Catalog{}}, dsn,
			chsink.Table{Topic: audit.Topic, DDL: audit.TableDDL, Insert: audit.InsertSQL, Row: audit.Row, Added: audit.AddedColumns()},
			slog.New(slog.DiscardHandler))
	}()
	defer func() { stop(); <-done }()
	var n, old0 uint64
	for ctx.Err() == nil {
		_ = ch.QueryRow(ctx, "SELECT countIf(kind = 'lookup' AND purpose = '纳税信用评价' AND has(keys, '91500000MA5U7CQ96X')), countIf(kind = 'granted') FROM audit").Scan(&n, &old0)
		if n == 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != 1 || old0 != 1 {
		t.Fatalf("after the copy: %d lookups with their purpose and keys (want 1), %d earlier rows (want 1)", n, old0)
	}
}
