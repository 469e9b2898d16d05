// Package audit keeps the bus's audit trail: every application, decision,
// grant, revocation, expiry, escalation, ACL change and every department's
// reads, as JSON events in the topic _jutong.audit, which lands in
// ClickHouse (table audit) for the data authority to query.
package audit

import (
	"context"
	"crypto/ed25519"
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
	DBGranted     = "db_granted"     // a department's database role may read a table (detail: which)
	DBRevoked     = "db_revoked"     // it may no longer
	// The open system (package open): one kind list for the trail and its
	// views (OpenReleasesView) and doors (Door).
	OpenReleased = "open_released"  // a release made (item, rows)
	OpenDownload = "open_download"  // a release downloaded (by the public, or an applicant's key)
	OpenRecords  = "open_records"   // a page of the records API
	OpenAPICalls = "open_api_calls" // the metadata calls of a minute, by action (records: how many)
	OpenApplied  = "open_applied"   // an applicant registered for conditional-open items
	OpenApproved = "open_approved"  // the authority approved it
	OpenRefused  = "open_refused"   // or refused it
	Replay       = "replay"         // an operator replays an item into a sink (detail: which, from where)
	Replayed     = "replayed"       // the replay ended (records: how many; detail: how)
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
	// The chain (see Chain): set by the writer, never by the caller.
	Chain string `json:"chain,omitempty"`
	Seq   int64  `json:"seq,omitempty"`
	Prev  string `json:"prev,omitempty"`
	After string `json:"after,omitempty"` // ChainStart: the topic's last record then
	Sig   string `json:"sig,omitempty"`   // ChainStart, ChainHead: Ed25519, base64
}

// Writer appends events to the audit topic, on a chain of its own.
type Writer struct {
	cl    *kgo.Client
	chain *Chain
	// Metrics, when set, counts the reads written.
	Metrics *Metrics
}

// NewWriter connects to Kafka; its records are chained and signed with key
// (see Chain), on chains named name.
func NewWriter(k []kgo.Opt, key ed25519.PrivateKey, name string) (*Writer, error) {
	cl, err := kafkaconn.NewClient(k, kgo.DefaultProduceTopic(Topic))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	c := NewChain(key, name)
	c.last = lastRecordHash(k, Topic)
	return &Writer{cl: cl, chain: c}, nil
}

// Write records events; it returns when Kafka has them. Writes are
// serialized: the chain is in the order of the topic.
func (w *Writer) Write(ctx context.Context, events ...Event) error {
	s, err := w.chain.seal(ctx, events)
	if err != nil {
		return err
	}
	recs := make([]*kgo.Record, len(s.values))
	for i, v := range s.values {
		recs[i] = &kgo.Record{Value: v}
	}
	err = w.cl.ProduceSync(ctx, recs...).FirstErr()
	s.done(err == nil, err != nil)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	w.Metrics.observe(events)
	return nil
}

// Seal writes a signed ChainHead when the chain grew since the last one:
// the bus calls it every minute and at Close.
func (w *Writer) Seal(ctx context.Context) error {
	if h := w.chain.head(false); h != nil {
		return w.Write(ctx, h...)
	}
	return nil
}

// Close ends the chain with a final head (within ctx) and closes the
// writer.
func (w *Writer) Close(ctx context.Context) error {
	var err error
	if h := w.chain.head(true); h != nil {
		err = w.Write(ctx, h...)
	}
	w.cl.Close()
	return err
}
