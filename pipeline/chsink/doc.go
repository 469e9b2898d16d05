// Package chsink is the ClickHouse sink: the analytics store keeps every
// change event of every item (the history), with its source, its timing
// (event, publish and landing times, milliseconds) and its Kafka origin.
//
// ClickHouse has no transactions, so the offset ledger travels in the data:
// each row carries its topic, partition and offset, each batch is one INSERT
// block into one table partition (the batch's landing month), which
// ClickHouse commits atomically, and on start the sink resumes after the
// highest offset it finds per partition. A batch is written either whole or
// not at all, so a crash neither loses nor duplicates events.
//
// Besides the history (events), current_state holds each item's current
// records (a ReplacingMergeTree versioned by Kafka offset), which ClickHouse
// derives from the history by a materialized view (current_state_mv): the
// sink sends each record once. A batch written again after a failed write,
// and a replay, also write the state rows of what the history holds already
// (the same versions: nothing changes if they had landed). The view current
// shows the state without deleted keys.
//
// The SQL runs on ClickHouse 18.16 (Debian's) and on current releases:
// DateTime plus millisecond integers instead of DateTime64, no JSON type.
package chsink
