package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/topicname"
)

// LedgerTopic keeps every feed's position in its item's topic (compacted),
// written in the same transactions as the feed's records.
const LedgerTopic = topicname.FeedLedger

// Sink writes one grant's projected feed; it is a pipeline.Sink, so the
// pipeline runtime drives it like any database sink.
type Sink struct {
	name    string
	topic   string
	grant   Grant
	proj    *Projection
	k       []kgo.Opt
	reg     *sr.Client
	cl      *kgo.Client // transactional producer
	schema  *schemas.Schema
	id      int
	parts   int32
	retainM int64
	log     *slog.Logger
	// disputes lists a record's open disputes (Config.Disputes).
	disputes func(item, key string) []string

	mu   sync.Mutex
	next map[int32]int64
}

// Config configures a feed Sink.
type Config struct {
	// Kafka connects to the cluster (as the bus: the sink creates the feed
	// topic and writes it transactionally).
	Kafka []kgo.Opt
	// Registry reaches the schema registry as the bus (the sink registers
	// the feed's projected schema).
	Registry []sr.ClientOpt
	Item     *catalog.Item
	Grant    Grant
	// Topic sets the feed topic's partitions (when the item's topic does not
	// tell) and retention.
	Topic catalog.TopicConfig
	// Prefix begins the sink's transactional id (default "jutong."):
	// <prefix>feed.<dept>.<item>.<grant>.
	Prefix string
	// Disputes, when set, lists the open disputes of a record (item, clear
	// key): a record projected while its key is disputed carries their ids
	// in the header jutong.disputes.
	Disputes func(item, key string) []string
	Log      *slog.Logger
}

// DisputesHeader is the header of a feed record whose key was under
// dispute when it was projected: the disputes' ids, comma separated.
const DisputesHeader = schemas.HeaderDisputes

// OriginOffset is the header of every feed record holding the offset of the
// change it projects in the item's topic (the partition is the same).
const OriginOffset = "jutong.origin.offset"

// New makes the feed sink of a grant whose projection is not the identity.
// Its name (and consumer group) is feed.<dept>.<item>.<grant>.
func New(_ context.Context, cfg Config) (*Sink, error) {
	if cfg.Item == nil || cfg.Grant.ID == "" || len(cfg.Kafka) == 0 {
		return nil, errors.New("feed: an item, a grant and Kafka options are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	it, g := cfg.Item, cfg.Grant
	p := Project(it, g)
	s, err := p.Schema()
	if err != nil {
		return nil, err
	}
	reg, err := sr.NewClient(cfg.Registry...)
	if err != nil {
		return nil, err
	}
	name := SinkName(g)
	cl, err := kafkaconn.NewClient(cfg.Kafka, kgo.TransactionalID(prefixOr(cfg.Prefix)+name), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionTimeout(time.Minute))
	if err != nil {
		return nil, err
	}
	return &Sink{name: name, topic: topicname.Feed(g.Department, it.Code, g.ID), grant: g, proj: p, k: cfg.Kafka, reg: reg, cl: cl, schema: s, disputes: cfg.Disputes,
		parts: cfg.Topic.Partitions, retainM: cfg.Topic.RetentionMs, log: cfg.Log, next: map[int32]int64{}}, nil
}

// FeedTopic is the topic the sink writes.
func (s *Sink) FeedTopic() string { return s.topic }

// Name implements pipeline.Sink.
func (s *Sink) Name() string { return s.name }

// Accepts implements pipeline.Sink: the grant's item only.
func (s *Sink) Accepts(it *catalog.Item) bool { return it.Code == s.proj.Source.Code }

// Close implements pipeline.Sink.
func (s *Sink) Close() error { s.cl.Close(); return nil }

// Prepare implements pipeline.Sink: the feed topic, as many partitions as
// the item's (a key stays in its partition), and its schema. Given the
// grant's item as the catalog has it now (a field added since, say), the
// sink projects that version from then on.
func (s *Sink) Prepare(ctx context.Context, items []*catalog.Item) error {
	for _, it := range items {
		if it.Code == s.proj.Source.Code && it != s.proj.Source {
			p := Project(it, s.grant)
			sc, err := p.Schema()
			if err != nil {
				return err
			}
			s.proj, s.schema = p, sc
		}
	}
	admin, err := kafkaconn.NewClient(s.k)
	if err != nil {
		return err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	parts := s.parts
	if offs, err := adm.ListEndOffsets(ctx, s.proj.Source.Topic()); err == nil {
		n := int32(0)
		offs.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				n++
			}
		})
		if n > 0 {
			parts = n
		}
	}
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return err
	}
	rf := int16(min(3, len(brokers)))
	cfg := map[string]*string{}
	if s.retainM != 0 {
		v := strconv.FormatInt(s.retainM, 10)
		cfg["retention.ms"] = &v
	}
	res, err := adm.CreateTopic(ctx, parts, rf, cfg, s.topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("feed: create %s: %w", s.topic, err)
	}
	if res.Err != nil && !errors.Is(res.Err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("feed: create %s: %w", s.topic, res.Err)
	}
	ss, err := s.reg.CreateSchema(ctx, s.topic+"-value", sr.Schema{Schema: s.schema.JSON, Type: sr.TypeAvro})
	if err != nil {
		return fmt.Errorf("feed: register the schema of %s: %w", s.topic, err)
	}
	s.id = ss.ID
	return nil
}

func (s *Sink) ledgerKey(p int32) string { return LedgerKey(s.name, s.proj.Source.Topic(), p) }

// SinkName is the name of a grant's feed sink (its pipeline's, and the
// first part of its ledger's keys).
func SinkName(g Grant) string { return "feed." + g.Department + "." + g.Item + "." + g.ID }

// LedgerKey is the key, in LedgerTopic, of a feed sink's position in a
// partition of its item's topic (the value: the next offset, in decimal).
func LedgerKey(sink, topic string, partition int32) string {
	return sink + "|" + topic + "|" + strconv.Itoa(int(partition))
}

// Offsets implements pipeline.Sink: read back from the ledger topic.
func (s *Sink) Offsets(ctx context.Context, _ []string) (pipeline.Offsets, error) {
	out := pipeline.Offsets{}
	t := s.proj.Source.Topic()
	prefix := s.name + "|"
	err := kafkaconn.ReadAll(ctx, s.k, LedgerTopic, func(r *kgo.Record) {
		k := string(r.Key)
		if !strings.HasPrefix(k, prefix) {
			return
		}
		p, err1 := strconv.Atoi(k[strings.LastIndexByte(k, '|')+1:])
		n, err2 := strconv.ParseInt(string(r.Value), 10, 64)
		if err1 != nil || err2 != nil {
			return
		}
		if out[t] == nil {
			out[t] = map[int32]int64{}
		}
		out[t][int32(p)] = n
	})
	if err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	s.mu.Lock()
	for p, n := range out[t] {
		s.next[p] = n
	}
	s.mu.Unlock()
	return out, nil
}

// Write implements pipeline.Sink: the projected records and the ledger in
// one Kafka transaction.
func (s *Sink) Write(ctx context.Context, batch []pipeline.Record, _ time.Time) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cl.BeginTransaction(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = s.cl.AbortBufferedRecords(actx)
			_ = s.cl.EndTransaction(actx, kgo.TryAbort)
		}
	}()
	moved := map[int32]int64{}
	var recs []*kgo.Record
	var buf []byte
	for _, r := range batch {
		if r.Offset < s.next[r.Partition] {
			continue
		}
		moved[r.Partition] = r.Offset + 1
		if r.Event == nil {
			continue // dead-lettered upstream
		}
		ev := *r.Event
		headers := []kgo.RecordHeader{{Key: OriginOffset, Value: strconv.AppendInt(nil, r.Offset, 10)}}
		if s.disputes != nil {
			if ids := s.disputes(r.Item.Code, ev.Key); len(ids) > 0 {
				headers = append(headers, kgo.RecordHeader{Key: DisputesHeader, Value: []byte(strings.Join(ids, ","))})
			}
		}
		ev.Key = s.proj.Key(ev.Key)
		ev.Data = s.proj.Apply(ev.Data)
		if buf, err = s.schema.AppendEncode(buf[:0], &ev); err != nil {
			// The record cannot be projected: it, not Kafka, is at fault;
			// the runner dead-letters it alone.
			return &pipeline.RecordFault{Err: fmt.Errorf("feed %s: %s partition %d offset %d: %w", s.topic, r.Item.Topic(), r.Partition, r.Offset, err)}
		}
		recs = append(recs, &kgo.Record{Topic: s.topic, Partition: r.Partition, Key: []byte(ev.Key),
			Value:   schemas.Frame(nil, s.id, buf),
			Headers: headers})
	}
	for p, n := range moved {
		recs = append(recs, &kgo.Record{Topic: LedgerTopic, Partition: 0, Key: []byte(s.ledgerKey(p)), Value: []byte(strconv.FormatInt(n, 10))})
	}
	if err := s.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("feed %s: %w", s.topic, err)
	}
	if err := s.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("feed %s: commit: %w", s.topic, err)
	}
	for p, n := range moved {
		s.next[p] = n
	}
	return nil
}

func prefixOr(p string) string {
	if p == "" {
		return "jutong."
	}
	return p
}

// Latest says where the latest change of a key landed in the sink that
// holds the item's current state: its partition and offset in the item's
// topic, whether there is one (none for a deleted key), and how far that
// sink has read the partition (its ledger's next offset).
type Latest func(ctx context.Context, item, key string) (partition int32, offset int64, found bool, ledgerNext int64, err error)

// Fetch reads and decodes the item topic's record at a position.
type Fetch func(ctx context.Context, partition int32, offset int64) (*schemas.Event, error)

// ErrBehind says the current state is behind the feed: Reflag could
// re-emit an older change than the feed holds, so it waits: retry.
var ErrBehind = errors.New("feed: the current state is behind the feed")

// Reflag re-emits into the feed a key's latest change, projected, with the
// key's open disputes in the header (none: the flag is cleared), so that a
// subscriber that read the record before a dispute opened or closed sees
// it now. It is serialized with Write, so the re-emitted change is the
// key's latest among those the feed holds and lands after them; when the
// feed has not projected the key's latest change yet, that change will
// carry the flag itself and nothing is re-emitted.
func (s *Sink) Reflag(ctx context.Context, key string, latest Latest, fetch Fetch) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	item := s.proj.Source
	p, off, found, ledger, err := latest(ctx, item.Code, key)
	if err != nil || !found {
		return err // a deleted or never-landed key: nothing to flag
	}
	next := s.next[p]
	switch {
	case ledger < next:
		return ErrBehind
	case off >= next:
		return nil // not projected yet: it will carry the flag
	}
	ev, err := fetch(ctx, p, off)
	if err != nil {
		return err
	}
	headers := []kgo.RecordHeader{{Key: OriginOffset, Value: strconv.AppendInt(nil, off, 10)}, {Key: DisputesHeader}}
	if s.disputes != nil {
		headers[1].Value = []byte(strings.Join(s.disputes(item.Code, ev.Key), ","))
	}
	out := *ev
	out.Key = s.proj.Key(ev.Key)
	out.Data = s.proj.Apply(ev.Data)
	body, err := s.schema.AppendEncode(nil, &out)
	if err != nil {
		return err
	}
	if err := s.cl.BeginTransaction(); err != nil {
		return err
	}
	rec := &kgo.Record{Topic: s.topic, Partition: p, Key: []byte(out.Key), Value: schemas.Frame(nil, s.id, body), Headers: headers}
	if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		_ = s.cl.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort)
		return fmt.Errorf("feed %s: reflag: %w", s.topic, err)
	}
	return s.cl.EndTransaction(ctx, kgo.TryCommit)
}
