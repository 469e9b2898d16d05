// Package registry is Jutong's schema registry: the subset of the Confluent
// Schema Registry REST API that clients use (franz-go's sr, hamba/avro's
// registry client, Confluent serializers, kcat -s avro), with its state kept
// in a compacted Kafka topic so that it survives restarts and every instance
// reading the topic converges on the same state.
//
// Writes go through Kafka first: an instance produces the new version to the
// topic and applies it when it reads it back, so all instances apply the same
// writes in the same order. Jutong's publishers and pipelines talk to the
// registry over HTTP with franz-go's sr client, so an external
// Confluent-compatible registry works in its place.
package registry
