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

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/schemas"
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

// Validate says what is wrong with the configuration.
func (cfg Config) Validate() error {
	if cfg.Item == nil || cfg.Grant.ID == "" || len(cfg.Kafka) == 0 || len(cfg.Registry) == 0 {
		return errors.New("feed: an item, a grant, Kafka and registry options are required")
	}
	return nil
}

// New makes the feed sink of a grant whose projection is not the identity.
// Its name (and consumer group) is feed.<dept>.<item>.<grant>.
func New(_ context.Context, cfg Config) (*Sink, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
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
			s.mu.Lock()
			s.proj, s.schema = p, sc
			s.mu.Unlock()
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
	if err := createTopic(ctx, adm, s.topic, parts, rf, cfg); err != nil {
		return err
	}
	// The feed's flags: one compacted partition, keyed by the feed's keys.
	if err := createTopic(ctx, adm, s.FlagsTopic(), 1, rf, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}); err != nil {
		return err
	}
	ss, err := s.reg.CreateSchema(ctx, s.topic+"-value", sr.Schema{Schema: s.schema.JSON, Type: sr.TypeAvro})
	if err != nil {
		return fmt.Errorf("feed: register the schema of %s: %w", s.topic, err)
	}
	s.id = ss.ID
	if _, err := s.reg.CreateSchema(ctx, s.FlagsTopic()+"-value", sr.Schema{Schema: schemas.FlagSchema, Type: sr.TypeAvro}); err != nil {
		return fmt.Errorf("feed: register the schema of %s: %w", s.FlagsTopic(), err)
	}
	return nil
}

func createTopic(ctx context.Context, adm *kadm.Client, topic string, parts int32, rf int16, cfg map[string]*string) error {
	res, err := adm.CreateTopic(ctx, parts, rf, cfg, topic)
	if err == nil {
		err = res.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("feed: create %s: %w", topic, err)
	}
	return nil
}

// FlagsTopic is the topic of the feed's records' dispute flags
// (topicname.Flags), which the grant reads beside the feed.
func (s *Sink) FlagsTopic() string { return topicname.Flags(s.topic) }

// Item is the grant's item.
func (s *Sink) Item() string { return s.proj.Source.Code }

// FlagKey is a record's key as the feed shows it (a pseudonym when the
// grant masks the key).
func (s *Sink) FlagKey(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proj.Key(key)
}

// FlagFields are the fields of a dispute the grant delivers.
func (s *Sink) FlagFields(fields []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, f := range fields {
		if s.proj.Item.Field(f) != nil {
			out = append(out, f)
		}
	}
	return out
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
	ledger, err := s.Ledger(ctx, s.proj.Source)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for p, n := range ledger {
		s.next[p] = n
	}
	s.mu.Unlock()
	return pipeline.Offsets{s.proj.Source.Topic(): ledger}, nil
}

// Ledger implements pipeline.Ledgerer (a feed keeps no index of event ids,
// so it is no pipeline.Locator): the feed's position in its item's
// topic, from the ledger topic.
func (s *Sink) Ledger(ctx context.Context, _ *catalog.Item) (map[int32]int64, error) {
	out := map[int32]int64{}
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
		out[int32(p)] = n
	})
	if err != nil {
		return nil, fmt.Errorf("feed: %w", err)
	}
	return out, nil
}

// WritesColumns implements pipeline.ColumnSink: the feed projects each
// record from the batch's columns, boxing only what it delivers.
func (s *Sink) WritesColumns() bool { return true }

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
		switch {
		case r.Cols != nil && r.Cols.Item == s.proj.Source:
			ev.Data = s.proj.ApplyRow(r.Cols, r.Row)
		case r.Cols != nil:
			ev.Data = s.proj.Apply(r.Cols.Event(r.Row).Data)
		default:
			ev.Data = s.proj.Apply(ev.Data)
		}
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
