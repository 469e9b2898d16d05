// Package lookup serves the platform's "interface calls": a granted
// department's system asks the current state of an item by its key (GET
// /v1/items/{code}/records/{key}) or by one of its declared lookup fields
// (GET /v1/items/{code}/records?field=&value=, paged), and gets the record
// as the authoritative source published it, projected and masked exactly
// as its grant's feed delivers it (feed.Project: one implementation for
// both), with its provenance (source department, event id, last change
// time, Kafka position).
//
// Every call is authenticated (HTTP basic auth with the department's
// principal and Kafka password), needs an active grant on the item whose
// purpose is the purpose stated (403 naming what is missing), is held to
// the grant's rate (429 with Retry-After), and is audited before it is
// answered: an audit event (kind lookup: department, item, grant, purpose,
// keys asked, how many found) acknowledged by Kafka, from where it is
// copied into ClickHouse's audit table exactly once. A call whose audit
// cannot be written is refused (503): no read goes unaudited. Concurrent
// calls' audit events share Kafka batches.
//
// Records are read from the PostgreSQL base and theme databases the
// PostgreSQL sink keeps (package pgsink); a key that is not there (never
// published, or deleted) is 404, with nothing about its masked values.
package lookup
