// Package fileadapter turns successive full extracts of a catalog item (CSV
// with a header row of field names, or JSON lines) into change events: a key
// not in the previous extract is a CREATE, a key whose record changed an
// UPDATE, a key gone a DELETE, and an unchanged record nothing.
//
// The previous extract is remembered as a state file of key -> record hash,
// written once every event of a run is acknowledged. A run that dies before
// that is simply done again: its events are published again (at least once;
// the base databases converge to the same state), under the same event ids,
// which are derived from the change and the state it follows. Lines that cannot be read
// (wrong column count, a value of the wrong form, a key twice in one extract)
// are quarantined with the reason, like records refused at the door.
package fileadapter
