package dispute

import (
	"encoding/json"
	"time"
)

// Row turns a dispute record into a row of chsink.DisputesDDL, the
// positions excluded (for chsink.Copy).
func Row(value []byte, ts time.Time) []any {
	var d Dispute
	if err := json.Unmarshal(value, &d); err != nil {
		d = Dispute{ID: "unreadable", State: "unreadable", Reason: err.Error(), Raised: ts}
	}
	fields := d.Fields
	if fields == nil {
		fields = []string{}
	}
	closed := d.Closed
	if closed.IsZero() {
		closed = time.Unix(0, 0)
	}
	return []any{d.ID, d.Item, d.Key, fields, d.RaisedBy, d.Source, string(d.State), d.Raised.Truncate(time.Second), d.Due.Truncate(time.Second),
		closed.Truncate(time.Second), boolByte(d.Escalated), boolByte(d.InTime), d.Correction}
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
