// Package pgsink is the PostgreSQL sink: the four base databases and the
// theme databases hold the current state of each catalog item routed to them.
//
// One PostgreSQL database holds one base database per schema (population,
// legal_person, geography, license) and a table per item, named after the
// item code (legal_person.enterprise_registration), with the item's fields as
// typed columns, the business key as primary key, and the last change's
// metadata (_event_id, _op, _event_time, _publish_time, _landed_at). An
// optional field added to the catalog adds its column on the next start.
//
// Each theme database is a schema named after the theme (theme_financing)
// with a view per item it uses (legal_person_enterprise_registration) and
// the theme's own views from the catalog, all over the same tables, so they
// are as current as the base databases. Items that belong to no base database
// but are used by a theme (health.vaccination) get their table too.
//
// A batch is applied in one transaction: the ledger rows of its partitions
// are locked, records the ledger has already passed are dropped, each key's
// last change wins, the upserts are COPYed into a staging table and merged
// (INSERT ... ON CONFLICT DO UPDATE), the deletes are one DELETE, and the
// ledger (jutong.sink_offsets) moves in the same transaction.
package pgsink
