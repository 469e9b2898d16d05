package audit

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/jutong/jutong/internal/chcopy"
	"github.com/jutong/jutong/internal/kafkaconn"
)

// TableDDL is the audit table analysts query, e.g. who read an item last
// week and under which grant:
//
//	SELECT department, grant, sum(records) FROM audit
//	WHERE kind = 'read' AND item = 'population.resident_registration'
//	  AND time >= now() - INTERVAL 7 DAY GROUP BY department, grant
const TableDDL = `CREATE TABLE IF NOT EXISTS audit (
  time DateTime,
  time_ms Int64,
  kind String,
  department String,
  item String,
  application String,
  grant String,
  actor String,
  detail String,
  records Int64,
  window_start DateTime,
  window_end DateTime,
  consumer_group String,
  kafka_partition Int32,
  kafka_offset Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (kind, item, time, kafka_partition, kafka_offset)`

const insertSQL = `INSERT INTO audit (time, time_ms, kind, department, item, application, grant, actor, detail, records,
  window_start, window_end, consumer_group, kafka_partition, kafka_offset)`

// ToClickHouse copies the audit topic into ClickHouse until ctx is done,
// exactly once (see package chcopy).
func ToClickHouse(ctx context.Context, k kafkaconn.Config, dsn string, log *slog.Logger) error {
	return chcopy.Run(ctx, k, dsn, chcopy.Table{Topic: Topic, DDL: TableDDL, Insert: insertSQL,
		Row: func(value []byte, ts time.Time) []any {
			var e Event
			if err := json.Unmarshal(value, &e); err != nil {
				e = Event{Kind: "unreadable", Detail: err.Error(), Time: ts}
			}
			return []any{e.Time.Truncate(time.Second), e.Time.UnixMilli(), e.Kind, e.Department, e.Item, e.Application, e.Grant,
				e.Actor, e.Detail, e.Records, e.WindowStart.Truncate(time.Second), e.WindowEnd.Truncate(time.Second), e.Group}
		}}, log)
}
