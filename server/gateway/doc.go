// Package gateway is the HTTP ingest gateway: departments whose systems
// cannot use the Go SDK publish change events with POST
// /v1/items/{code}/events, one JSON event or NDJSON batches, authenticated
// by a per-department bearer token. Every line gets a result: accepted (with
// its partition and offset), duplicate (an event id already accepted: a
// retried request publishes nothing twice) or rejected (with the rule and
// field; the record is kept in the quarantine topic). The OpenAPI document
// is served at /openapi.yaml and kept in this package.
package gateway
