package audit

import (
	"encoding/json"
	"time"
)

// TableDDL is the audit table analysts query (raw is the record as written
// to Kafka, which its chain's hashes cover: 'jutong audit verify'), e.g.
// who read an item last week and under which grant:
//
//	SELECT department, grant, sum(records) FROM audit
//	WHERE kind = 'read' AND item = 'population.resident_registration'
//	  AND time >= now() - INTERVAL 7 DAY GROUP BY department, grant
//
// or who looked a citizen up, for what:
//
//	SELECT time, department, item, grant, purpose, records AS found FROM audit
//	WHERE kind = 'lookup' AND has(keys, '110101199003070018')
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
  purpose String,
  keys Array(String),
  raw String,
  kafka_partition Int32,
  kafka_offset Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (kind, item, time, kafka_partition, kafka_offset)`

// InsertSQL inserts rows of TableDDL, the positions last (for chsink.Copy).
const InsertSQL = `INSERT INTO audit (time, time_ms, kind, department, item, application, grant, actor, detail, records,
  window_start, window_end, consumer_group, purpose, keys, raw, kafka_partition, kafka_offset)`

// AddedColumns are TableDDL's columns a table made by an earlier version
// lacks (chsink.Table.Added).
func AddedColumns() [][2]string {
	return [][2]string{{"purpose", "String"}, {"keys", "Array(String)"}, {"raw", "String"}}
}

// Row turns an audit record into a row of TableDDL, the positions excluded
// (for chsink.Copy, which copies Topic into ClickHouse exactly once).
func Row(value []byte, ts time.Time) []any {
	var e Event
	if err := json.Unmarshal(value, &e); err != nil {
		e = Event{Kind: "unreadable", Detail: err.Error(), Time: ts}
	}
	keys := e.Keys
	if keys == nil {
		keys = []string{}
	}
	return []any{e.Time.Truncate(time.Second), e.Time.UnixMilli(), e.Kind, e.Department, e.Item, e.Application, e.Grant,
		e.Actor, e.Detail, e.Records, e.WindowStart.Truncate(time.Second), e.WindowEnd.Truncate(time.Second), e.Group, e.Purpose, keys, string(value)}
}

// OpenReleasesView is the open releases' timeliness scorecard, from the
// audit trail's open_released events: per item, the last release, how
// many, how old the last one is, and whether it is within the item's
// declared interval (catalog_items: the sources' update frequency).
const OpenReleasesView = `CREATE VIEW IF NOT EXISTS scorecard_open_releases AS
SELECT item, last_release, releases, dateDiff('second', last_release, now()) AS age_seconds, interval_seconds,
  toUInt8(dateDiff('second', last_release, now()) <= interval_seconds) AS on_time
FROM (SELECT item, max(time) AS last_release, count() AS releases FROM audit WHERE kind = '` + OpenReleased + `' GROUP BY item)
ANY LEFT JOIN (SELECT item, any(interval_seconds) AS interval_seconds FROM catalog_items GROUP BY item) USING item`

// RowColumns are the columns of Row a verification from ClickHouse reads
// back and compares with the record kept in raw, in Row's order.
const RowColumns = "time, time_ms, kind, department, item, application, grant, actor, detail, records, window_start, window_end, consumer_group, purpose, keys"
