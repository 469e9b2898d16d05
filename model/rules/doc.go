// Package contract holds the rules a record must pass before it reaches its
// topic: the publisher is the item's source department (one datum, one
// source), the values conform to the item's schema (types, enums, decimal
// scale), required fields are present and not blank, and the catalog's
// content rules hold (citizen ID and USCC checksums, division codes, dates not
// in the future). The SDK, the HTTP gateway and the adapters all call Check,
// so the rules live in one place.
package rules
