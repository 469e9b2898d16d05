// Package schemas turns catalog items into Avro schemas and change events
// into bytes and back.
//
// Every record on an item topic is a change event: an Envelope record
// (event id, operation, business key, source, event and publish times) whose
// data field holds the item's Value record, or null on delete. Both are
// generated from the catalog, so the catalog is the one source of truth; the
// .avsc files under avsc/ are that output, checked in for review and for
// non-Go clients, and a test fails if they drift.
//
// On the wire a record is framed the Confluent way: magic byte 0, the 4-byte
// big-endian schema id from the registry, then the Avro binary.
package schemas
