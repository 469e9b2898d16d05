// Package audit keeps the bus's audit trail: every application, decision,
// grant, revocation, expiry, escalation, ACL change and every department's
// reads, as JSON events in the topic _jutong.audit, which lands in
// ClickHouse (table audit) for the data authority to query.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/topicname"
)

// Topic holds the audit trail.
const Topic = topicname.Audit

// The kinds of audit events.
const (
	Applied       = "applied"
	Decided       = "decided"
	Granted       = "granted"
	Refused       = "refused"
	Revoked       = "revoked"
	Expired       = "expired"
	Escalated     = "escalated"
	ACLAdded      = "acl_added"
	ACLRemove     = "acl_removed"
	Read          = "read"
	Lookup        = "lookup"         // a query of the current state (records: how many found)
	LookupRefused = "lookup_refused" // one refused (no grant, another purpose): detail says why
	Snapshot      = "snapshot"       // an item's current state streamed to a grant (detail: its positions)
)

// Event is one audited fact.
type Event struct {
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Department  string    `json:"department,omitempty"` // whom it concerns (applicant, reader)
	Item        string    `json:"item,omitempty"`
	Application string    `json:"application,omitempty"`
	Grant       string    `json:"grant,omitempty"` // the grant under which a read happened
	Actor       string    `json:"actor,omitempty"` // who acted (a department code, or "jutong")
	Detail      string    `json:"detail,omitempty"`
	// Reads: how many records the department's groups consumed, in what window.
	Records     int64     `json:"records,omitempty"`
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
	Group       string    `json:"group,omitempty"`
	// Lookups: the purpose stated and the keys (or field=value) asked.
	Purpose string   `json:"purpose,omitempty"`
	Keys    []string `json:"keys,omitempty"`
}

// Writer appends events to the audit topic.
type Writer struct {
	cl *kgo.Client
}

// NewWriter connects to Kafka.
func NewWriter(k []kgo.Opt) (*Writer, error) {
	cl, err := kafkaconn.NewClient(k, kgo.DefaultProduceTopic(Topic))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &Writer{cl: cl}, nil
}

// Write records events; it returns when Kafka has them.
func (w *Writer) Write(ctx context.Context, events ...Event) error {
	recs := make([]*kgo.Record, 0, len(events))
	for _, e := range events {
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Key: []byte(e.Department), Value: b})
	}
	if err := w.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Close closes the writer.
func (w *Writer) Close() { w.cl.Close() }
