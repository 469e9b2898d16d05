package chsink_test

import (
	"context"
	"sync"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/sinktest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestConformance runs the sink conformance suite on the ClickHouse sink:
// the current state (current_state, FINAL) and the full history (events).
func TestConformance(t *testing.T) {
	cat, _ := catalog.Sample()
	// The test reads what each sink wrote through a connection of its own.
	var mu sync.Mutex
	conns := map[pipeline.Sink]driver.Conn{}
	conn := func(s pipeline.Sink) driver.Conn {
		mu.Lock()
		defer mu.Unlock()
		return conns[s]
	}
	sinktest.Run(t, sinktest.Harness{
		Items: []*catalog.Item{cat.Item("legal_person.enterprise_registration"), cat.Item("health.vaccination")},
		Database: func(t *testing.T) func() pipeline.Sink {
			dsn := testenv.ClickHouse(t)
			db := testenv.ClickHouseConn(t, dsn)
			return func() pipeline.Sink {
				s, err := chsink.New(context.Background(), chsink.Config{Name: "clickhouse", DSN: dsn})
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				conns[s] = db
				mu.Unlock()
				return s
			}
		},
		State: func(ctx context.Context, s pipeline.Sink, it *catalog.Item) (map[string]int64, error) {
			rows, err := conn(s).Query(ctx, `SELECT key, version FROM current_state FINAL WHERE item = ? AND deleted = 0`, it.Topic())
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			out := map[string]int64{}
			for rows.Next() {
				var k string
				var v int64
				if err := rows.Scan(&k, &v); err != nil {
					return nil, err
				}
				out[k] = v
			}
			// The analysts' view must agree with the table it reads.
			var n uint64
			if err := conn(s).QueryRow(ctx, `SELECT count() FROM current WHERE item = ?`, it.Topic()).Scan(&n); err != nil {
				return nil, err
			}
			if int(n) != len(out) {
				t.Errorf("%s: the current view has %d rows, current_state %d live keys", it.Code, n, len(out))
			}
			return out, rows.Err()
		},
		Field: func(ctx context.Context, s pipeline.Sink, it *catalog.Item, key, field string) (string, error) {
			var v string
			err := conn(s).QueryRow(ctx, `SELECT visitParamExtractString(data, '`+field+`') FROM current WHERE item = ? AND key = ?`, it.Topic(), key).Scan(&v)
			return v, err
		},
		History: func(ctx context.Context, s pipeline.Sink, it *catalog.Item) ([]sinktest.Position, error) {
			rows, err := conn(s).Query(ctx, `SELECT kafka_partition, kafka_offset FROM events WHERE item = ?`, it.Topic())
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			var out []sinktest.Position
			for rows.Next() {
				var p sinktest.Position
				if err := rows.Scan(&p.Partition, &p.Offset); err != nil {
					return nil, err
				}
				out = append(out, p)
			}
			return out, rows.Err()
		},
	})
}
