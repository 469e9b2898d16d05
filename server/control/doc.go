// Package control is the bus's control plane for access: the demand list
// (applications to read an item), their review by the data authority and
// the source department within statutory working-day deadlines, the grants
// that result, and the escalation of overdue reviews. Its state lives in a
// compacted Kafka topic; grants become Kafka ACLs and projected feeds
// through the callbacks the bus gives it.
package control
