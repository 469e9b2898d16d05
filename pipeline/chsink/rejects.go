package chsink

import (
	"encoding/json"
	"time"

	"github.com/jutong/jutong/model/quarantine"
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

// RejectsTable is the quarantine's copy into the rejects table, for Copy.
func RejectsTable() Table {
	return Table{Topic: quarantine.Topic, DDL: RejectsDDL, Insert: rejectsInsert,
		Row: func(value []byte, ts time.Time) []any {
			var r quarantine.Record
			if err := json.Unmarshal(value, &r); err != nil {
				r = quarantine.Record{Rule: "unreadable", Reason: err.Error(), RejectedAt: ts}
			}
			return []any{r.RejectedAt.Truncate(time.Second), r.Item, r.Department, r.System, r.Adapter, r.Rule, r.Field, r.Reason, r.Key, r.EventID}
		}}
}
