package consumers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/retry"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// ErrNotAuthorized is returned (wrapped, naming the item) when Kafka refuses
// the department access to an item's topic or to its consumer group.
var ErrNotAuthorized = errors.New("not authorized")

// Delivery is one event handed to a handler.
type Delivery struct {
	Item *catalog.Item
	// Topic is where it was read: the item's topic, or the department's
	// projected feed of it (then Event.Data holds the granted fields only,
	// those above the grant's grade masked as text).
	Topic     string
	Event     *schemas.Event
	Partition int32
	Offset    int64
	// Disputes are the open disputes of the record (the source is checking
	// it, docs/disputes.md): on a feed, when the bus projected the record;
	// on the item's own topic, when the change passed the door; in a
	// snapshot, when it was taken. A flag change arrives as a Flag (OnFlag).
	Disputes []string
}

// DisputesHeader is the header naming a record's open disputes.
const DisputesHeader = schemas.HeaderDisputes

// disputes reads a record's disputes header; legacy says whether it is a
// legacy flag record (written onto items' topics before the flags topics).
func disputes(r *kgo.Record) (ids []string, legacy bool) {
	for _, h := range r.Headers {
		switch {
		case h.Key == DisputesHeader:
			ids = schemas.SplitDisputes(h.Value)
		case schemas.IsLegacyFlag(h.Key, h.Value):
			legacy = true
		}
	}
	return ids, legacy
}

// Handler processes one delivery; an error stops Run and redelivers.
type Handler func(ctx context.Context, d Delivery) error

// Subscriber reads items for one department.
type Subscriber struct {
	cfg   cfg
	dept  string
	items map[string]*catalog.Item // by the topic read: the item's, or its feed
	flags map[string]*catalog.Item // by the flags topic of a topic read
	cl    *kgo.Client
	dec   *schemas.Decoder
	m     *metrics
	// skipBelow: after a snapshot, a feed's records whose origin offset is
	// below the snapshot's position are in the snapshot already.
	skipBelow map[string]map[int32]int64
}

// New creates a subscriber of department to the given items; it asks Kafka
// which of them the department reads through a masked feed.
func New(ctx context.Context, cat *catalog.Catalog, department string, items []string, conn connect.Config, opts ...Opt) (*Subscriber, error) {
	c := defaultCfg(department)
	c.conn = conn
	for _, o := range opts {
		o(&c)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if cat.Department(department) == nil {
		return nil, fmt.Errorf("consumers: unknown department %q", department)
	}
	if len(items) == 0 {
		return nil, errors.New("consumers: no items to subscribe to")
	}
	if !strings.HasPrefix(c.group, department+".") {
		c.group = department + "." + c.group
	}
	m, err := newMetrics(c.registerer)
	if err != nil {
		return nil, fmt.Errorf("consumers: %w", err)
	}
	s := &Subscriber{cfg: c, dept: department, items: map[string]*catalog.Item{}, flags: map[string]*catalog.Item{},
		m: m, skipBelow: map[string]map[int32]int64{}}
	kconn := append(c.conn.Kafka(), c.conn.KafkaOpts...) // TLS and the caller's own
	feeds, err := grantedFeeds(ctx, kconn, department)
	if err != nil {
		return nil, err
	}
	var topics []string
	for _, code := range items {
		it := cat.Item(code)
		if it == nil {
			return nil, fmt.Errorf("consumers: unknown catalog item %q", code)
		}
		topic := it.Topic()
		if f, ok := feeds[code]; ok {
			topic = f // the grant masks or drops fields: its projected feed
		}
		s.items[topic] = it
		s.flags[topicname.Flags(topic)] = it
		topics = append(topics, topic, topicname.Flags(topic))
	}
	if c.snapshot != nil {
		if err := s.takeSnapshot(ctx, kconn); err != nil {
			return nil, err
		}
	}
	kopts := append(c.conn.Kafka(), kgo.ConsumerGroup(c.group), kgo.ConsumeTopics(topics...),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), // never an aborted adapter transaction
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if s.cl, err = kgo.NewClient(append(kopts, c.conn.KafkaOpts...)...); err != nil {
		return nil, fmt.Errorf("consumers: %w", err)
	}
	reg, err := c.conn.RegistryClient()
	if err != nil {
		s.cl.Close()
		return nil, fmt.Errorf("consumers: %w", err)
	}
	s.dec = schemas.NewDecoder(reg)
	return s, nil
}

// Run delivers events to h until ctx is done (nil) or h fails (its error).
func (s *Subscriber) Run(ctx context.Context, h Handler) error {
	for {
		fs := s.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			s.cl.AllowRebalance()
			return nil
		}
		var fatal error
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) {
				fatal = fmt.Errorf("consumers: department %s may not read %s (group %s): %w: %v", s.dept, t, s.cfg.group, ErrNotAuthorized, err)
			} else if fatal == nil && !errors.Is(err, context.Canceled) {
				s.cfg.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		if fatal != nil {
			s.cl.AllowRebalance()
			return fatal
		}
		err := s.deliver(ctx, fs, h)
		s.cl.AllowRebalance()
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil // ctx ended in the middle of a batch: what was handled is committed
		}
		if err != nil {
			return err
		}
	}
}

func (s *Subscriber) deliver(ctx context.Context, fs kgo.Fetches, h Handler) error {
	var stop error
	var done []*kgo.Record
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if stop != nil {
			return
		}
		for _, r := range p.Records {
			if s.beforeSnapshot(r) {
				done = append(done, r)
				continue
			}
			ids, legacy := disputes(r)
			if legacy || s.flags[r.Topic] != nil {
				if err := s.flag(ctx, r, legacy); err != nil {
					stop = err
					return
				}
				done = append(done, r)
				continue
			}
			ev, err := s.decode(ctx, r)
			var bad *schemas.RecordError
			switch {
			case errors.As(err, &bad):
				// A record no schema reads (garbage, an unknown schema id):
				// it is reported and passed, never a stop for the others.
				s.m.undecodable.WithLabelValues(s.items[r.Topic].Code).Inc()
				if herr := s.cfg.onUndecodable(ctx, Undecodable{Item: s.items[r.Topic], Topic: r.Topic, Partition: r.Partition,
					Offset: r.Offset, Value: r.Value, Err: bad}); herr != nil {
					stop = herr
					return
				}
				done = append(done, r)
				continue
			case err != nil:
				stop = err // ctx done while the registry could not be reached
				return
			}
			if err := h(ctx, Delivery{Item: s.items[r.Topic], Topic: r.Topic, Event: ev, Partition: r.Partition, Offset: r.Offset, Disputes: ids}); err != nil {
				stop = err
				return
			}
			s.m.delivered.WithLabelValues(s.items[r.Topic].Code).Inc()
			done = append(done, r)
		}
	})
	if len(done) == 0 {
		return stop
	}
	// Commit what the handler finished even when ctx ends meanwhile.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.cl.CommitRecords(cctx, done...); err != nil && stop == nil {
		stop = fmt.Errorf("consumers: commit: %w", err)
	}
	if stop != nil {
		s.rewind(fs)
	}
	return stop
}

// flag hands a record of a flags topic, or a legacy flag record of an
// item's topic, to OnFlag.
func (s *Subscriber) flag(ctx context.Context, r *kgo.Record, legacy bool) error {
	it := s.flags[r.Topic]
	decode := schemas.DecodeFlag
	if legacy {
		it, decode = s.items[r.Topic], schemas.ParseLegacyFlag
	}
	if r.Value == nil {
		return nil // a tombstone: compaction drops what it is of
	}
	f, err := decode(r.Value)
	if err != nil {
		s.cfg.log.Warn("consumers: skipping an unreadable flag record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	}
	s.m.flags.WithLabelValues(it.Code).Inc()
	if s.cfg.onFlag == nil {
		return nil
	}
	return s.cfg.onFlag(ctx, Flag{Item: it, Key: f.Key, Disputes: f.Disputes, Fields: f.Fields, At: f.At, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
}

// beforeSnapshot says whether r is a feed record the snapshot holds already.
func (s *Subscriber) beforeSnapshot(r *kgo.Record) bool {
	pos, ok := s.skipBelow[r.Topic][r.Partition]
	if !ok {
		return false
	}
	for _, h := range r.Headers {
		if h.Key == OriginOffset {
			origin, err := strconv.ParseInt(string(h.Value), 10, 64)
			return err == nil && origin < pos
		}
	}
	return false
}

// decode decodes a record; a registry that does not answer is waited for
// (retried), never taken for a bad record.
func (s *Subscriber) decode(ctx context.Context, r *kgo.Record) (*schemas.Event, error) {
	var ev *schemas.Event
	_, err := retry.Do(ctx, retry.Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}, func() (err error) {
		ev, err = s.dec.Decode(ctx, r.Value)
		var bad *schemas.RecordError
		if errors.As(err, &bad) {
			return retry.Permanent(err)
		}
		return err
	}, func(_ int, err error, wait time.Duration) {
		s.cfg.log.Warn("consumers: cannot decode, will retry", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "backoff", wait, "err", err)
	})
	return ev, err
}

// rewind moves the fetched partitions back to their committed offsets, so
// that what was fetched after a failure is delivered again. A partition
// without a commit goes back to 0, which the client resets to the log start.
func (s *Subscriber) rewind(fs kgo.Fetches) {
	committed := s.cl.CommittedOffsets()
	set := map[string]map[int32]kgo.EpochOffset{}
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if set[p.Topic] == nil {
			set[p.Topic] = map[int32]kgo.EpochOffset{}
		}
		at := kgo.EpochOffset{Epoch: -1}
		if o, ok := committed[p.Topic][p.Partition]; ok {
			at.Offset = o.Offset
		}
		set[p.Topic][p.Partition] = at
	})
	s.cl.SetOffsets(set)
}

// Topics lists the topics the subscriber reads, by item code.
func (s *Subscriber) Topics() map[string]string {
	out := map[string]string{}
	for t, it := range s.items {
		out[it.Code] = t
	}
	return out
}

// grantedFeeds finds the projected feeds the department may read, by item:
// Kafka lists only the topics a principal may describe.
func grantedFeeds(ctx context.Context, k []kgo.Opt, dept string) (map[string]string, error) {
	cl, err := kafkaconn.NewClient(k)
	if err != nil {
		return nil, fmt.Errorf("consumers: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	listed, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("consumers: list topics: %w", err)
	}
	out := map[string]string{}
	for _, t := range listed.Names() {
		if d, item, _, ok := topicname.ParseFeed(t); ok && d == dept {
			out[item] = t
		}
	}
	return out, nil
}

// Close leaves the group and closes the client, waiting at most the
// CloseTimeout for the group to be left.
func (s *Subscriber) Close() {
	s.cl.AllowRebalance()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.closeTimeout)
	defer cancel()
	_ = s.cl.LeaveGroupContext(ctx)
	s.cl.Close()
}
