// Package consumers is the subscriber SDK: a department reads the change
// events of the catalog items it may read, decoded through the schema
// registry, with at-least-once delivery in per-key order.
//
// A Subscriber consumes in the department's consumer group. Its handler gets
// each event in partition order; when the handler returns nil the record is
// committed, when it returns an error Run stops with that error and the record
// (and those after it) is delivered again on the next Run. Kafka itself
// enforces who may read what (ACLs): reading a topic the department has no
// grant for fails with ErrNotAuthorized naming the item.
//
// When the department's grant drops or masks fields, it reads the grant's
// projected feed instead of the item's topic; the Subscriber finds it by
// itself (Delivery.Topic says which). Events come as generic values (string,
// int64, float64, bool, *big.Rat, time.Time, nil) keyed by field name; the
// catalog item describes them. A key the grant masks comes as the feed's
// pseudonym (unique per source key).
//
// A record under dispute comes with its open disputes (Delivery.Disputes);
// when a dispute opens or closes, the bus writes the record's flag to the
// topic's flags topic, which the subscriber reads too and hands to OnFlag
// (docs/disputes.md). The topics themselves carry only change events of
// their registered schema, so any Kafka client with a Confluent Avro
// deserializer reads them (docs/clients.md).
//
// WithSnapshot makes a new group start from the items' current state (the
// bus's snapshot, as the grant sees it) and follow from exactly where it
// stops. The subscriber authenticates to the schema registry and the API
// with its SASL user and password; TLS sets a CA for both. See
// docs/access.md.
package consumers
