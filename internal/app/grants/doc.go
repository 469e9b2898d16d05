// Package grants is the access policy of the running bus: it makes Kafka
// match the active grants of the control plane. For each grant it decides
// the topic the department reads (the item's own when the grant sees every
// field unmasked, else a masked feed of its own), keeps one feed running per
// grant that needs one, reconciles the ACLs (the catalog's plus a read per
// grant), audits every ACL it adds or removes, and attributes the
// departments' consumer-group reads to their grants (for the read audit and
// the subscriber-lag gauge).
//
// The Reconciler works through three small interfaces (an ACL admin, a feed
// runner, an audit writer), so that it is tested without a whole bus;
// KafkaACLs and FeedRunner are the implementations the bus wires in.
package grants
