package producers

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// QuarantineTopic keeps every record refused at the door, with the reason
// (written by the bus's door only).
const QuarantineTopic = quarantine.Topic

// Rejected is a quarantined record as it is stored (JSON) in QuarantineTopic.
type Rejected = quarantine.Record

// refusalRecord is the inbox record of an event the publisher refused: the
// door keeps it in the quarantine with the rule found here.
func refusalRecord(dept string, it *catalog.Item, e *schemas.Event, v *rules.Violation, at time.Time, raw []byte) *kgo.Record {
	rec := schemas.PortableRecord(it, e.Data)
	r := Rejected{
		Item: it.Code, Key: e.Key, Department: e.Source.Department, System: e.Source.System, Adapter: e.Source.Adapter,
		Rule: v.Rule, Field: v.Field, Reason: v.Reason, EventID: e.ID, Op: string(e.Op),
		EventTime: e.EventTime, RejectedAt: at, Record: rec, Raw: string(raw),
	}
	if len(raw) > quarantine.PayloadKeep || !utf8.Valid(raw) {
		// Too large or not text: its first bytes and a SHA-256.
		r.Raw = ""
		r.KeepPayload(raw)
		r.Record = nil
	}
	b, _ := json.Marshal(r)
	if len(b) > it.RecordLimit() {
		// A refusal as large as the record it refuses: keep its start.
		whole := b
		r.Record, r.Raw = nil, ""
		r.KeepPayload(whole)
		b, _ = json.Marshal(r)
	}
	return &kgo.Record{
		Topic: topicname.Inbox(dept),
		Key:   []byte(e.Key),
		Value: b,
		Headers: []kgo.RecordHeader{
			{Key: inbox.HeaderItem, Value: []byte(it.Code)},
			{Key: inbox.HeaderKind, Value: []byte(inbox.KindRefused)},
		},
	}
}
