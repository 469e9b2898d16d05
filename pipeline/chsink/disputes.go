package chsink

// DisputesDDL is the disputes' table in ClickHouse (package dispute's
// topic, copied by Copy; dispute.Row makes the rows): a row per version of
// a dispute, the latest kept by ReplacingMergeTree (read it with FINAL, or
// through disputes_current).
const DisputesDDL = `CREATE TABLE IF NOT EXISTS disputes (
  id String,
  item String,
  key String,
  fields Array(String),
  raised_by String,
  source String,
  state String,
  raised DateTime,
  due DateTime,
  closed DateTime,
  escalated UInt8,
  in_time UInt8,
  correction String,
  kafka_partition Int32,
  kafka_offset Int64
) ENGINE = ReplacingMergeTree(kafka_offset)
ORDER BY id`

// DisputesInsert inserts rows of DisputesDDL, the positions last.
const DisputesInsert = `INSERT INTO disputes (id, item, key, fields, raised_by, source, state, raised, due, closed, escalated, in_time, correction,
  kafka_partition, kafka_offset)`

// DisputesViews are what analysts query: each dispute as it stands, the
// records disputed now, the current state with each record's open
// disputes (current_flagged: dispute_ids, empty when none), and the departments' dispute scorecard (raised
// against them as sources and by them; open; resolved in time; overdue;
// median hours to resolve).
var DisputesViews = []string{
	`CREATE VIEW IF NOT EXISTS disputes_current AS
SELECT id, item, key, fields, raised_by, source, state, raised, due, closed, escalated, in_time, correction
FROM disputes FINAL`,
	`CREATE VIEW IF NOT EXISTS disputes_open AS
SELECT item, key, id AS dispute_id, fields, raised_by, source, raised, due, escalated
FROM disputes FINAL WHERE state IN ('open', 'correcting')`,
	`CREATE VIEW IF NOT EXISTS current_flagged AS
SELECT item, key, op, source_department, event_time, landed_time, data, dispute_ids
FROM current ANY LEFT JOIN (SELECT item, key, groupArray(dispute_id) AS dispute_ids FROM disputes_open GROUP BY item, key) USING (item, key)`,
	`CREATE VIEW IF NOT EXISTS scorecard_disputes AS
SELECT department, raised_against, raised AS raised_by, open, resolved_in_time, overdue, median_hours_to_resolve
FROM (SELECT source AS department, count() AS raised_against,
    countIf(state IN ('open', 'correcting')) AS open,
    countIf(state IN ('corrected', 'rejected') AND in_time = 1) AS resolved_in_time,
    countIf(escalated = 1) AS overdue,
    round(quantileExactIf(0.5)(toInt64(toUInt32(closed)) - toInt64(toUInt32(raised)), state IN ('corrected', 'rejected')) / 3600, 1) AS median_hours_to_resolve
  FROM disputes FINAL GROUP BY department)
ALL FULL OUTER JOIN (SELECT raised_by AS department, count() AS raised FROM disputes FINAL GROUP BY department) USING department`,
}
