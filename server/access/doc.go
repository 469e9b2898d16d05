// Package access turns the catalog's rules about who may do what into Kafka
// principals and ACLs, so that they hold for any Kafka client, not only
// Jutong's.
//
// Every department is a SASL/SCRAM-SHA-256 principal (its catalog
// "principal"). The ACLs Jutong owns are those of principals starting with
// "User:dept."; Reconcile makes them exactly what the catalog implies, adding
// what is missing and removing what is not implied any more:
//
//   - the source department of an item: WRITE and DESCRIBE on its topic (one
//     datum, one source, enforced by the brokers);
//   - every department: WRITE and DESCRIBE on the quarantine topic (its rejected
//     records are kept there), IDEMPOTENT_WRITE on the cluster, and for its
//     adapters READ, WRITE and DESCRIBE on the checkpoint topic and WRITE and
//     DESCRIBE on the transactional ids prefixed with its principal.
package access
