// Package audit keeps the bus's audit trail: every application, decision,
// grant, revocation, expiry, escalation, ACL change and every department's
// reads, as JSON events in the topic _jutong.audit, which lands in
// ClickHouse (table audit) for the data authority to query.
package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
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
//
// Writes are committed in groups: a write made while another is being
// produced waits, and every write that waited is sealed onto the chain and
// produced together with the next round trip. Each caller still returns
// only once Kafka has its events; the chain stays in the order of the
// topic (one producer, one partition); and the lookups, each of which
// writes its audit event before it answers, are no longer one round trip
// to the brokers at a time.
type Writer struct {
	cl    *kgo.Client
	chain *Chain
	// Metrics, when set, counts the reads written.
	Metrics *Metrics

	mu       sync.Mutex
	queue    []*pendingWrite
	flushing bool
}

// pendingWrite is one Write waiting for its group's round trip.
type pendingWrite struct {
	events []Event
	done   chan error // buffered: the flusher never waits for the caller
}

// produceTimeout bounds one group's round trip: past it every write of the
// group fails (and the chain, whose end is then unknown, begins anew).
const produceTimeout = time.Minute

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

// Write records events; it returns when Kafka has them (or ctx ends: they
// may then still land). Writes made at once are produced together, in the
// order they came.
func (w *Writer) Write(ctx context.Context, events ...Event) error {
	p := &pendingWrite{events: events, done: make(chan error, 1)}
	w.mu.Lock()
	w.queue = append(w.queue, p)
	if !w.flushing {
		w.flushing = true
		go w.flush()
	}
	w.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: %w", ctx.Err())
	}
}

// flush produces the waiting writes, a group per round trip, until none
// waits.
func (w *Writer) flush() {
	for {
		w.mu.Lock()
		group := w.queue
		w.queue = nil
		if len(group) == 0 {
			w.flushing = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		var events []Event
		for _, p := range group {
			events = append(events, p.events...)
		}
		err := w.produce(events)
		for _, p := range group {
			p.done <- err
		}
	}
}

// produce seals events onto the chain and writes them in one round trip.
func (w *Writer) produce(events []Event) error {
	if len(events) == 0 {
		return nil // a barrier (Close): every earlier write is done
	}
	ctx, cancel := context.WithTimeout(context.Background(), produceTimeout)
	defer cancel()
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
	// Every write made before ends first: nothing may follow the final head.
	err := w.Write(ctx)
	if h := w.chain.head(true); h != nil && err == nil {
		err = w.Write(ctx, h...)
	}
	w.cl.Close()
	return err
}
