// Package clients holds the recipes a department developer copies to read
// and publish with the standard Kafka and Confluent schema-registry
// libraries of other languages (node/: kafkajs, Confluent's
// @confluentinc/kafka-javascript; python/: Debian's python3-confluent-kafka),
// and the suite that runs them against `jutong dev` (docs/clients.md). It
// has no Go code of its own: the Go SDK is packages producers and consumers.
package clients
