package producers

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/producers/contract"
	"github.com/jutong/jutong/quarantine"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/topicname"
)

// QuarantineTopic keeps every record refused at the door, with the reason.
const QuarantineTopic = quarantine.Topic

// CheckpointTopic keeps the adapters' positions (compacted, keyed by
// adapter), written in the same transactions as the events they publish.
const CheckpointTopic = topicname.Checkpoints

// Rejected is a quarantined record as it is stored (JSON) in QuarantineTopic.
type Rejected = quarantine.Record

// quarantineRecord builds the quarantine record of a refused event.
func quarantineRecord(it *catalog.Item, e *schemas.Event, v *contract.Violation, at time.Time, raw []byte) *kgo.Record {
	rec := make(map[string]any, len(e.Data))
	for k, val := range e.Data {
		if f := it.Field(k); f != nil {
			val = schemas.PortableValue(f, val)
		}
		if _, err := json.Marshal(val); err != nil {
			val = fmt.Sprintf("%v", val) // keep what was sent, even if JSON cannot carry its type
		}
		rec[k] = val
	}
	r := Rejected{
		Item: it.Code, Key: e.Key, Department: e.Source.Department, System: e.Source.System, Adapter: e.Source.Adapter,
		Rule: v.Rule, Field: v.Field, Reason: v.Reason, EventID: e.ID, Op: string(e.Op),
		EventTime: e.EventTime, RejectedAt: at, Record: rec, Raw: string(raw),
	}
	b, _ := json.Marshal(r)
	return &kgo.Record{
		Topic: QuarantineTopic,
		Key:   []byte(it.Code + "/" + e.Key),
		Value: b,
		Headers: []kgo.RecordHeader{
			{Key: "jutong.item", Value: []byte(it.Code)},
			{Key: "jutong.rule", Value: []byte(v.Rule)},
			{Key: "jutong.department", Value: []byte(e.Source.Department)},
		},
	}
}
