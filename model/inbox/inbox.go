// Package inbox is the format of a department's inbox records
// (topicname.Inbox): what the publisher SDK writes and the door reads. A
// leaf: the SDK needs nothing of the door to write one.
//
// An inbox record's key is the event's business key, its value the change
// event as Confluent-framed Avro under the item's registered schema, and its
// HeaderItem header the item's code. A record the client refused and could
// not encode is sent all the same, so that the bus keeps it: HeaderKind is
// KindRefused and the value is a quarantine.Record (JSON).
package inbox

// The headers of an inbox record.
const (
	HeaderItem  = "jutong.item"
	HeaderKind  = "jutong.kind"
	KindRefused = "refused"
	// HeaderCorrects names the dispute a change corrects (its source
	// publishes it): once the door has accepted the change, the dispute
	// waits for it to land everywhere.
	HeaderCorrects = "jutong.corrects"
)
