package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/topicname"
)

// PositionsTopic keeps the read auditor's last seen group offsets
// (compacted), written in the same transaction as the read events.
const PositionsTopic = topicname.AuditPositions

// Reads audits what departments read, from Kafka itself: the committed
// offsets of every department's consumer groups, whatever client they use.
// Each poll turns the offsets' advance since the last poll into one read
// event per group and topic: department, item, grant, records, window.
type Reads struct {
	k []kgo.Opt
	// Resolve maps a group and a topic to the department, the item and the
	// grant it is read under; ok false for groups that are not a
	// department's.
	resolve func(group, topic string) (dept, item, grant string, ok bool)
	cl      *kgo.Client // transactional: events and positions together
	chain   *Chain
	// Metrics, when set, counts the reads written.
	Metrics *Metrics
	last    map[string]int64
	lastAt  time.Time
	loaded  bool
}

// NewReads makes a read auditor; prefix begins its transactional id
// (<prefix>audit.reads; "" for "jutong.").
func NewReads(k []kgo.Opt, prefix string, key ed25519.PrivateKey, resolve func(group, topic string) (dept, item, grant string, ok bool)) (*Reads, error) {
	if prefix == "" {
		prefix = "jutong."
	}
	cl, err := kafkaconn.NewClient(k, kgo.TransactionalID(prefix+"audit.reads"))
	if err != nil {
		return nil, err
	}
	c := NewChain(key, "reads")
	c.last = lastRecordHash(k, Topic)
	return &Reads{k: k, resolve: resolve, cl: cl, chain: c, last: map[string]int64{}}, nil
}

// Close closes the auditor's client.
func (r *Reads) Close() { r.cl.Close() }

type position struct {
	Offset int64     `json:"offset"`
	At     time.Time `json:"at"`
}

func (r *Reads) load(ctx context.Context) error {
	err := kafkaconn.ReadAll(ctx, r.k, PositionsTopic, func(rec *kgo.Record) {
		var p position
		if json.Unmarshal(rec.Value, &p) == nil {
			r.last[string(rec.Key)] = p.Offset
			if p.At.After(r.lastAt) {
				r.lastAt = p.At
			}
		}
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	r.loaded = true
	return nil
}

// writeSealed writes events on chain, sealed by a head, and the auditor's
// positions, in one transaction of cl; the chain moves on only if it
// commits (it ends where the outcome is not known).
func writeSealed(ctx context.Context, cl *kgo.Client, chain *Chain, evs []Event, positions []*kgo.Record) error {
	s, err := chain.seal(ctx, append(evs, Event{Kind: ChainHead, Actor: "jutong", Detail: headDetail}))
	if err != nil {
		return err
	}
	recs := make([]*kgo.Record, 0, len(s.values)+len(positions))
	for _, v := range s.values {
		recs = append(recs, &kgo.Record{Topic: Topic, Value: v})
	}
	recs = append(recs, positions...)
	if err := cl.BeginTransaction(); err != nil {
		s.done(false, false)
		return err
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		aerr := cl.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort)
		s.done(false, aerr != nil) // aborted: the chain's records are not there
		return fmt.Errorf("audit: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		s.done(false, true)
		return fmt.Errorf("audit: %w", err)
	}
	s.done(true, false)
	return nil
}

// Poll audits the reads since the last poll and returns the events written.
func (r *Reads) Poll(ctx context.Context) ([]Event, error) {
	if !r.loaded {
		if err := r.load(ctx); err != nil {
			return nil, err
		}
	}
	admin, err := kafkaconn.NewClient(r.k)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: list groups: %w", err)
	}
	groups := listed.Groups()
	now := time.Now().UTC()
	start := r.lastAt
	if start.IsZero() {
		start = now
	}
	type gt struct{ group, topic string }
	read := map[gt]int64{}
	moved := map[string]int64{}
	fetched := adm.FetchManyOffsets(ctx, groups...)
	for _, resp := range fetched {
		if resp.Err != nil {
			continue
		}
		resp.Fetched.Each(func(o kadm.OffsetResponse) {
			if o.Err != nil || o.At < 0 {
				return
			}
			if _, _, _, ok := r.resolve(resp.Group, o.Topic); !ok {
				return
			}
			key := resp.Group + "|" + o.Topic + "|" + strconv.Itoa(int(o.Partition))
			prev := r.last[key]
			if o.At > prev {
				read[gt{resp.Group, o.Topic}] += o.At - prev
				moved[key] = o.At
			}
		})
	}
	if len(moved) == 0 {
		return nil, nil
	}
	var evs []Event
	for k, n := range read {
		dept, item, grant, _ := r.resolve(k.group, k.topic)
		evs = append(evs, Event{Time: now, Kind: Read, Department: dept, Item: item, Grant: grant, Actor: dept, Group: k.group,
			Records: n, WindowStart: start, WindowEnd: now, Detail: "topic " + k.topic})
	}
	var positions []*kgo.Record
	for key, off := range moved {
		b, _ := json.Marshal(position{Offset: off, At: now})
		positions = append(positions, &kgo.Record{Topic: PositionsTopic, Key: []byte(key), Value: b})
	}
	if err := writeSealed(ctx, r.cl, r.chain, evs, positions); err != nil {
		return nil, err
	}
	r.Metrics.observe(evs)
	for key, off := range moved {
		r.last[key] = off
	}
	r.lastAt = now
	return evs, nil
}
