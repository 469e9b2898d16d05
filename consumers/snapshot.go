package consumers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// SnapshotConfig makes a new subscriber start from the items' current
// state: see WithSnapshot.
type SnapshotConfig struct {
	// API is the bus's HTTP API (https://host:8080); Purpose the purpose
	// the department's grants were approved for.
	API, Purpose string
	// HTTPClient reaches the API (its TLS trusting the bus's CA); default
	// http.DefaultClient.
	HTTPClient *http.Client
	// Handle receives each record of the current state, as a Delivery
	// whose Event has op SNAPSHOT, the record's data as the grant sees it
	// (values the grant masks as text), and the position of the change
	// that made it.
	Handle Handler
}

// WithSnapshot has a subscriber whose group has never committed take the
// items' current state first (the bus's snapshot, consistent with its
// PostgreSQL sink), hand every record to cfg.Handle, and commit, for its
// group, the positions the state stops at, so that Run follows from
// exactly there: no change missed, none twice. A group that has committed
// already just follows. New does this before it returns.
func WithSnapshot(sc SnapshotConfig) Opt { return func(c *cfg) { c.snapshot = &sc } }

// OriginOffset is the header of a feed record holding the offset of the
// change it projects in the item's topic (as feed.OriginOffset).
const OriginOffset = "jutong.origin.offset"

// snapshotStart is the first line of a snapshot.
type snapshotStart struct {
	Grant     string          `json:"grant"`
	Positions map[int32]int64 `json:"positions"`
	Follow    string          `json:"follow"`
}

// snapshotLine is a record line, or the end line.
type snapshotLine struct {
	Key        string         `json:"key"`
	Data       map[string]any `json:"data"`
	Disputes   []string       `json:"disputes"`
	Provenance struct {
		EventID   string `json:"event_id"`
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
	} `json:"provenance"`
	End   bool   `json:"end"`
	Error string `json:"error"`
}

// takeSnapshot runs the snapshot of each topic the subscriber reads, unless
// the group has committed, and commits where following starts.
func (s *Subscriber) takeSnapshot(ctx context.Context, conn []kgo.Opt) error {
	cl, err := kafkaconn.NewClient(conn)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsets(ctx, s.cfg.group)
	switch {
	case errors.Is(err, kerr.GroupIDNotFound): // a group never seen: it has no commits
		committed = nil
	case err != nil:
		return fmt.Errorf("consumers: snapshot: the group's offsets: %w", err)
	}
	for topic := range s.items {
		if _, ok := committed[topic]; ok {
			s.cfg.log.Info("consumers: the group follows already: no snapshot", "group", s.cfg.group, "topic", topic)
			return nil
		}
	}
	commits := kadm.Offsets{}
	for topic, it := range s.items {
		start, err := s.snapshotItem(ctx, topic, it)
		if err != nil {
			return err
		}
		from, err := followFrom(ctx, cl, topic, it, start)
		if err != nil {
			return err
		}
		for p, o := range from {
			commits.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
		}
		if topic != it.Topic() {
			s.skipBelow[topic] = start.Positions // a feed behind the sink may still bring older changes
		}
	}
	resp, err := adm.CommitOffsets(ctx, s.cfg.group, commits)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("consumers: snapshot: commit where to follow from: %w", err)
	}
	return nil
}

// snapshotItem streams one item's snapshot to the handler.
func (s *Subscriber) snapshotItem(ctx context.Context, topic string, it *catalog.Item) (*snapshotStart, error) {
	sc := s.cfg.snapshot
	hc := sc.HTTPClient
	if hc == nil {
		hc = s.cfg.conn.HTTPClient() // trusting the connection's TLS roots
	}
	req, err := http.NewRequestWithContext(ctx, "GET", sc.API+"/v1/items/"+url.PathEscape(it.Code)+"/snapshot?"+url.Values{"purpose": {sc.Purpose}}.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(s.cfg.conn.User, s.cfg.conn.Password)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("consumers: snapshot of %s: %w", it.Code, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return nil, fmt.Errorf("consumers: snapshot of %s: HTTP %d: %s", it.Code, resp.StatusCode, e.Error)
	}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 1<<20), 16<<20)
	var start snapshotStart
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &start) != nil {
		return nil, fmt.Errorf("consumers: snapshot of %s: no start line", it.Code)
	}
	if start.Follow != topic {
		return nil, fmt.Errorf("consumers: snapshot of %s follows %s, the subscriber reads %s", it.Code, start.Follow, topic)
	}
	for lines.Scan() {
		var l snapshotLine
		dec := json.NewDecoder(bytes.NewReader(lines.Bytes()))
		dec.UseNumber() // numbers as the item's types (schemas.FromJSON)
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("consumers: snapshot of %s: %w", it.Code, err)
		}
		switch {
		case l.Error != "":
			return nil, fmt.Errorf("consumers: snapshot of %s: %s", it.Code, l.Error)
		case l.End:
			return &start, nil
		}
		ev := &schemas.Event{ID: l.Provenance.EventID, Op: schemas.OpSnapshot, Key: l.Key, Data: typed(it, l.Data)}
		d := Delivery{Item: it, Topic: topic, Event: ev, Partition: l.Provenance.Partition, Offset: l.Provenance.Offset, Disputes: l.Disputes}
		if err := sc.Handle(ctx, d); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("consumers: snapshot of %s ended early: %v", it.Code, lines.Err())
}

// typed converts a snapshot's JSON values to the item's types where they
// are the item's (masked values stay text, as in a feed).
func typed(it *catalog.Item, data map[string]any) map[string]any {
	out := make(map[string]any, len(data))
	for k, v := range data {
		out[k] = v
		if conv, err := schemas.FromJSON(it, map[string]any{k: v}); err == nil {
			out[k] = conv[k]
		}
	}
	return out
}

// followFrom finds, in the topic the subscriber reads, where the changes
// after the snapshot start: the item's topic at the positions themselves;
// a feed at its first record whose origin offset reaches the position
// (waiting, up to a minute, for a feed behind the sink to get there).
func followFrom(ctx context.Context, cl *kgo.Client, topic string, it *catalog.Item, start *snapshotStart) (map[int32]int64, error) {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = start.Positions[o.Partition] })
	if topic == it.Topic() {
		return out, nil
	}
	for p := range out {
		at, err := feedOffset(ctx, cl, topic, p, start.Positions[p], ends[topic][p].Offset)
		if err != nil {
			return nil, err
		}
		out[p] = at
	}
	return out, nil
}

// feedOffset is the offset of the first record of a feed partition whose
// origin offset is at least pos, or, when the feed holds none yet, its end
// (then the subscriber skips, in this run, the feed's records from before
// the snapshot that may still come).
func feedOffset(ctx context.Context, base *kgo.Client, topic string, p int32, pos, end int64) (int64, error) {
	if end == 0 {
		return 0, nil
	}
	cl, err := kgo.NewClient(append(base.Opts(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return 0, fmt.Errorf("consumers: snapshot: reading feed %s partition %d: %w", topic, p, ctx.Err())
		}
		done := false
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if fp.HighWatermark >= end && (len(fp.Records) == 0 || fp.Records[len(fp.Records)-1].Offset >= end-1) {
				done = true
			}
		})
		for _, r := range fs.Records() {
			if r.Offset >= end {
				return end, nil
			}
			for _, h := range r.Headers {
				if h.Key != OriginOffset {
					continue
				}
				if origin, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil && origin >= pos {
					return r.Offset, nil
				}
			}
		}
		if done {
			return end, nil
		}
	}
}
