// Package quarantine defines the record the door keeps for every event it
// refuses (JSON, in the quarantine topic topicname.Quarantine): who sent it,
// the rule, field and reason, and what was sent. The publisher SDK writes
// it; the ClickHouse copy (rejects) and the scorecards read it. It is a leaf:
// reading the quarantine needs no publisher.
package quarantine

import (
	"time"

	"github.com/jutong/jutong/topicname"
)

// Topic keeps every record refused at the door, with the reason.
const Topic = topicname.Quarantine

// Record is a quarantined record as it is stored (JSON) in Topic.
type Record struct {
	Item       string         `json:"item"`
	Key        string         `json:"key"`
	Department string         `json:"department"`
	System     string         `json:"system"`
	Adapter    string         `json:"adapter"`
	Rule       string         `json:"rule"`
	Field      string         `json:"field,omitempty"`
	Reason     string         `json:"reason"`
	EventID    string         `json:"event_id"`
	Op         string         `json:"op"`
	EventTime  time.Time      `json:"event_time"`
	RejectedAt time.Time      `json:"rejected_at"`
	Record     map[string]any `json:"record"`        // the data as submitted, values in portable form
	Raw        string         `json:"raw,omitempty"` // the input as received, when it could not be parsed
}
