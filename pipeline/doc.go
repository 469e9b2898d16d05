// Package pipeline fans the records of item topics out to sinks (the
// PostgreSQL base and theme databases, ClickHouse), exactly once.
//
// A Runner reads the topics routed to one sink in one consumer group. Kafka's
// committed group offsets are only informational (they show lag to the usual
// tools): the source of truth is the sink's own offset ledger, written in the
// same transaction (PostgreSQL) or the same inserted block (ClickHouse) as the
// data. On every partition assignment the Runner asks the sink where to resume.
//
// Faults are of two kinds. A record that can never be written (it does not
// decode) goes to the dead-letter topic with the error and its origin, and
// the partition moves on. A sink that fails to write (database down, slow,
// restarting) is never a record fault: the Runner retries the same batch with
// backoff, holding its partitions, and carries on when the database is back.
//
// Replay re-delivers one item to a sink that implements Replayer, from an
// offset or a time up to what the sink already holds, without duplicating
// anything and without moving its ledger. Package sinktest is the conformance
// suite every sink passes.
package pipeline
