package schemas

import (
	"time"
)

// Op is the kind of change an event carries.
type Op string

// The operations of a change event (Debezium's c, u, d and r).
const (
	OpCreate   Op = "CREATE"
	OpUpdate   Op = "UPDATE"
	OpDelete   Op = "DELETE"
	OpSnapshot Op = "SNAPSHOT" // a row read by an initial or periodic snapshot
)

// Valid reports whether op is one of the four operations.
func (op Op) Valid() bool {
	switch op {
	case OpCreate, OpUpdate, OpDelete, OpSnapshot:
		return true
	}
	return false
}

// Source says where an event came from.
type Source struct {
	Department string // the publishing department's code
	System     string // the department's system of record
	Adapter    string // sdk, http, sql, file
}

// Event is one change of one entity of a catalog item.
//
// Data holds the item's fields by name: string, int64, float64, bool,
// *big.Rat (decimal), time.Time (date: midnight UTC; timestamp: UTC, ms), or
// nil for an absent optional field. Data is nil on delete.
type Event struct {
	ID          string // a UUID, unique per event; used for idempotency
	Op          Op
	Key         string // the business key (citizen ID, USCC, ...)
	Data        map[string]any
	Source      Source
	EventTime   time.Time // when the change happened in the source system
	PublishTime time.Time // when it was published onto the bus
}
