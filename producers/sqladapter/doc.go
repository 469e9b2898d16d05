// Package sqladapter publishes a department's database table as change
// events of a catalog item: first a snapshot of every row (op SNAPSHOT), then
// the rows changed since, found by an updated-at or monotonically increasing
// column (op UPDATE, or DELETE when the soft-delete column says so).
//
// Exactly once: each batch of events and the adapter's checkpoint (its
// position in the table) are committed in one Kafka transaction, the
// checkpoint to the compacted topic _jutong.checkpoints. On start the adapter
// reads its last committed checkpoint and resumes there: a crash or a restart
// neither skips a row nor publishes one twice. Columns are matched to the
// item's fields by name; PostgreSQL and MySQL/MariaDB are supported.
package sqladapter
