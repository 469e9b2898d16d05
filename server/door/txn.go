package door

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jutong/jutong/model/rules"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/retry"
	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/model/topicname"
)

// producer is what a transaction produces with: the inbox consumer's
// GroupTransactSession, or the gateway's transactional client.
type producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// accepted is an id to remember once its transaction commits.
type accepted struct {
	item, id, key string
	pos           Position
	cand          int // the candidate's index
}

// decide judges the candidates, in order; sc (nil: a fresh one) is reset
// first, its memory kept for the next transaction.
func (d *Door) decide(ctx context.Context, cands []Candidate, now time.Time, sc *scratch) ([]verdict, error) {
	if sc == nil {
		sc = newScratch()
	}
	sc.reset()
	vs := make([]verdict, len(cands))
	for i, c := range cands {
		v, err := d.judge(ctx, c, now, sc)
		if err != nil {
			return nil, err
		}
		vs[i] = v
	}
	return vs, nil
}

// write produces the verdicts in the open transaction: the accepted records
// first (their positions go into the id index), then the index records and
// the quarantine's. It returns each candidate's outcome and the ids to
// remember when the transaction commits.
func (d *Door) write(ctx context.Context, p producer, vs []verdict, now time.Time) ([]Outcome, []accepted, error) {
	out := make([]Outcome, len(vs))
	var recs []*kgo.Record
	var idx []int
	for i, v := range vs {
		if v.status == Accepted {
			recs, idx = append(recs, v.rec), append(idx, i)
		}
	}
	var ids []accepted
	if len(recs) > 0 {
		if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return nil, nil, err
		}
	}
	var second []*kgo.Record
	var secondIdx []int
	for j, r := range recs {
		i := idx[j]
		if d.cfg.Forwarded != nil && vs[i].current {
			// Before the commit, which makes the record visible to the
			// pipelines; should the transaction abort, no reader ever
			// reaches that position.
			d.cfg.Forwarded(r, vs[i].ev)
		}
		pos := Position{r.Partition, r.Offset}
		out[i] = Outcome{Status: Accepted, Position: pos}
		ids = append(ids, accepted{vs[i].it.Code, vs[i].ev.ID, vs[i].ev.Key, pos, i})
	}
	for _, r := range idRecords(ids, now) {
		second, secondIdx = append(second, r), append(secondIdx, -1)
	}
	for i, v := range vs {
		switch v.status {
		case Duplicate:
			out[i] = Outcome{Status: Duplicate, Position: v.pos}
		case Rejected:
			for k, r := range quarantineRecords(v.q) {
				second = append(second, r)
				if k == 0 {
					secondIdx = append(secondIdx, i)
				} else {
					secondIdx = append(secondIdx, -1)
				}
			}
			out[i] = Outcome{Status: Rejected, Violation: v.v}
		}
	}
	if len(second) > 0 {
		res := p.ProduceSync(ctx, second...)
		if err := res.FirstErr(); err != nil {
			return nil, nil, err
		}
		for k, r := range res {
			if i := secondIdx[k]; i >= 0 {
				out[i].Position = Position{r.Record.Partition, r.Record.Offset}
			}
		}
	}
	// A duplicate of an id accepted earlier in this very transaction takes
	// that record's position.
	byID := make(map[string]Position, len(ids))
	for _, a := range ids {
		byID[idKey(a.item, a.id)] = a.pos
	}
	for i, v := range vs {
		if v.status == Duplicate && v.pos.Partition < 0 {
			out[i].Position = byID[idKey(v.it.Code, v.ev.ID)]
		}
	}
	return out, ids, nil
}

// committed remembers the accepted ids, tells of the corrections of
// disputes, and counts the outcomes.
func (d *Door) committed(path string, cands []Candidate, out []Outcome, ids []accepted, now time.Time) {
	for _, a := range ids {
		d.ids.add(a.item, a.id, a.pos, now)
		if c := cands[a.cand]; c.Corrects != "" && d.cfg.OnCorrection != nil {
			d.cfg.OnCorrection(c.Corrects, c.Department, a.item, a.key, a.id)
		}
	}
	for i, o := range out {
		rule := ""
		if o.Violation != nil {
			rule = o.Violation.Rule
		}
		d.m.outcomes.WithLabelValues(cands[i].Item, cands[i].Department, path, o.Status, rule).Inc()
		if o.Status == Rejected {
			d.m.quarantined.WithLabelValues(cands[i].Item, cands[i].Department, rule).Inc()
		}
	}
}

// Admit passes the gateway's candidates through the door in one
// transaction: every one is accepted, a duplicate or rejected (kept in the
// quarantine), or, on an error, none is (nothing of it is visible; the
// request may be retried).
func (d *Door) Admit(ctx context.Context, cands []Candidate) ([]Outcome, error) {
	d.admitMu.Lock()
	defer d.admitMu.Unlock()
	if d.admit == nil {
		cl, err := kafkaconn.NewClient(d.cfg.Kafka, kgo.TransactionalID(d.cfg.Group+".gateway."+d.cfg.InstanceID),
			kgo.TransactionTimeout(time.Minute), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(0))
		if err != nil {
			return nil, err
		}
		d.admit = cl
	}
	now := d.cfg.Now()
	vs, err := d.decide(ctx, cands, now, nil)
	if err != nil {
		return nil, err
	}
	if err := d.admit.BeginTransaction(); err != nil {
		return nil, fmt.Errorf("door: begin: %w", err)
	}
	out, ids, err := d.write(ctx, d.admit, vs, now)
	commit := kgo.TryCommit
	if err != nil {
		commit = kgo.TryAbort
	}
	if eerr := d.admit.EndTransaction(context.WithoutCancel(ctx), commit); eerr != nil && err == nil {
		err = eerr
	}
	if err != nil {
		return nil, fmt.Errorf("door: transaction aborted, nothing of it is visible: %w", err)
	}
	d.committed("gateway", cands, out, ids, now)
	return out, nil
}

// Run consumes the inboxes of every department in the catalog until ctx is
// done, forwarding each record exactly once: the records it produces and
// the inbox offsets commit in one transaction. A registry or Kafka that
// fails aborts the transaction, which is done again after a wait.
func (d *Door) Run(ctx context.Context) error {
	var inboxes []string
	for _, dep := range d.cfg.Catalog.Departments {
		inboxes = append(inboxes, topicname.Inbox(dep.Code))
	}
	sess, err := kgo.NewGroupTransactSession(append(slices.Clone(d.cfg.Kafka),
		kgo.ConsumerGroup(d.cfg.Group), kgo.ConsumeTopics(inboxes...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionalID(d.cfg.Group+".inbox."+d.cfg.InstanceID), kgo.TransactionTimeout(time.Minute),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), // stable fetch offsets: always on in franz-go
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(0))...)
	if err != nil {
		return fmt.Errorf("door: %w", err)
	}
	defer sess.Close()
	backoff := retry.Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}
	poll := d.m.stage.WithLabelValues("door", "poll")
	sc := newScratch() // the inbox path's, reused from transaction to transaction
	for {
		t0 := time.Now()
		fs := sess.PollFetches(ctx)
		poll.Add(time.Since(t0).Seconds())
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			d.cfg.Log.Warn("door: fetch", "topic", t, "partition", p, "err", err)
		})
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		cands := inboxCandidates(recs)
		_, err := retry.Do(ctx, backoff, func() error { return d.forward(ctx, sess, cands, sc) }, func(_ int, err error, wait time.Duration) {
			d.cfg.Log.Warn("door: forwarding failed, will retry", "records", len(cands), "backoff", wait, "err", err)
		})
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
}

// forward judges and writes one poll's records in one transaction.
func (d *Door) forward(ctx context.Context, sess *kgo.GroupTransactSession, cands []Candidate, sc *scratch) error {
	now := d.cfg.Now()
	if err := sess.Begin(); err != nil {
		return err
	}
	t0 := time.Now()
	vs, err := d.decide(ctx, cands, now, sc)
	t1 := time.Now()
	var out []Outcome
	var ids []accepted
	if err == nil {
		out, ids, err = d.write(ctx, sess, vs, now)
	}
	commit := kgo.TryCommit
	if err != nil {
		commit = kgo.TryAbort
	}
	t2 := time.Now()
	ok, eerr := sess.End(context.WithoutCancel(ctx), commit)
	d.m.stage.WithLabelValues("door", "decide").Add(t1.Sub(t0).Seconds())
	d.m.stage.WithLabelValues("door", "produce").Add(t2.Sub(t1).Seconds())
	d.m.stage.WithLabelValues("door", "commit").Add(time.Since(t2).Seconds())
	switch {
	case err != nil:
		return err
	case eerr != nil:
		return eerr
	case !ok:
		// A rebalance took the partitions: the session rewinds to the
		// committed offsets, and whoever owns them now does the work.
		return nil
	}
	d.committed("inbox", cands, out, ids, now)
	return nil
}

// inboxCandidates turns inbox records into candidates.
func inboxCandidates(recs []*kgo.Record) []Candidate {
	out := make([]Candidate, 0, len(recs))
	for _, r := range recs {
		dept, _ := topicname.InboxOwner(r.Topic)
		c := Candidate{Department: dept, Value: r.Value, Source: fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)}
		kind := ""
		for _, h := range r.Headers {
			switch h.Key {
			case inbox.HeaderItem:
				c.Item = string(h.Value)
			case inbox.HeaderKind:
				kind = string(h.Value)
			case inbox.HeaderCorrects:
				c.Corrects = string(h.Value)
			}
		}
		if kind == inbox.KindRefused {
			var q quarantine.Record
			if err := json.Unmarshal(r.Value, &q); err != nil {
				q = quarantine.Record{Rule: rules.RefusedUnreadable, Reason: "a client's refusal notice that is not JSON: " + err.Error()}
			}
			if q.Rule == "" {
				q.Rule, q.Reason = rules.RefusedUnreadable, "a client's refusal notice without a rule"
			}
			c.Refused = &q
		} else if kind != "" {
			c.Bad = nil
			c.Refused = &quarantine.Record{Rule: rules.KindUnknown, Reason: fmt.Sprintf("record kind %q is not known", kind)}
		}
		out = append(out, c)
	}
	return out
}
