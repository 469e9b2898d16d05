package chsink

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/jutong/jutong/internal/chcopy"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/producers"
)

// RejectsDDL keeps every record refused at the door (the quarantine topic),
// for the reject rates of the department scorecards.
const RejectsDDL = `CREATE TABLE IF NOT EXISTS rejects (
  rejected_at DateTime,
  item String,
  department String,
  system String,
  adapter String,
  rule String,
  field String,
  reason String,
  record_key String,
  event_id String,
  kafka_partition Int32,
  kafka_offset Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (department, item, rejected_at, kafka_partition, kafka_offset)`

const rejectsInsert = `INSERT INTO rejects (rejected_at, item, department, system, adapter, rule, field, reason, record_key, event_id, kafka_partition, kafka_offset)`

// CopyRejects copies the quarantine topic into the rejects table until ctx
// is done, exactly once; seen (optional) is told of each rejected record.
func CopyRejects(ctx context.Context, k kafkaconn.Config, dsn string, seen func(producers.Rejected), log *slog.Logger) error {
	t := chcopy.Table{Topic: producers.QuarantineTopic, DDL: RejectsDDL, Insert: rejectsInsert,
		Row: func(value []byte, ts time.Time) []any {
			var r producers.Rejected
			if err := json.Unmarshal(value, &r); err != nil {
				r = producers.Rejected{Rule: "unreadable", Reason: err.Error(), RejectedAt: ts}
			}
			return []any{r.RejectedAt.Truncate(time.Second), r.Item, r.Department, r.System, r.Adapter, r.Rule, r.Field, r.Reason, r.Key, r.EventID}
		}}
	if seen != nil {
		t.Seen = func(value []byte) {
			var r producers.Rejected
			if json.Unmarshal(value, &r) == nil {
				seen(r)
			}
		}
	}
	return chcopy.Run(ctx, k, dsn, t, log)
}
