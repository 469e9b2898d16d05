// Package quarantine defines the record the door keeps for every event it
// refuses (JSON, in the quarantine topic topicname.Quarantine): who sent it,
// the rule, field and reason, and what was sent. The publisher SDK writes
// it; the ClickHouse copy (rejects) and the scorecards read it. It is a leaf:
// reading the quarantine needs no publisher.
package quarantine

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/jutong/jutong/model/topicname"
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
	Raw        string         `json:"raw,omitempty"` // the input as received (text), when it could not be parsed
	// Payload is the record as it reached the door (base64), whole up to
	// PayloadKeep bytes, else its first PayloadKeep bytes; PayloadSize and
	// PayloadSHA256 describe the whole.
	Payload       string `json:"payload,omitempty"`
	PayloadSize   int    `json:"payload_size,omitempty"`
	PayloadSHA256 string `json:"payload_sha256,omitempty"`
	// Position is where the refused record was read (an inbox), when it
	// came through one.
	Source string `json:"source,omitempty"`
}

// PayloadKeep is how much of a refused record's bytes the quarantine keeps.
const PayloadKeep = 64 << 10

// KeepPayload fills the payload fields from b.
func (r *Record) KeepPayload(b []byte) {
	sum := sha256.Sum256(b)
	r.PayloadSize, r.PayloadSHA256 = len(b), hex.EncodeToString(sum[:])
	if len(b) > PayloadKeep {
		b = b[:PayloadKeep]
	}
	r.Payload = base64.StdEncoding.EncodeToString(b)
}
