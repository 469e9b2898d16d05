package dispute

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// FlagTopic is a flags topic (topicname.Flags) the service keeps besides
// the item's own: a grant's feed's, whose readers see the records' keys
// (Key) and fields (Fields) as the grant delivers them.
type FlagTopic struct {
	Topic  string
	Key    func(key string) string
	Fields func(fields []string) []string
}

// FlagScheme is the way a dispute's flag is shown: 0, by releases before
// the flags topics, with flag records on the item's topic; 1, on the flags
// topics. A dispute loaded with 0 is upgraded at Open (upgradeLegacy).
const FlagScheme = 1

// show makes the flags show the disputes that opened or closed: for each
// record concerned, PostgreSQL's flag table, then one flag record on the
// item's flags topic and on each of its feeds' naming the record's open
// disputes; then the disputes are saved as shown. What fails is logged and
// shown at the next Tick, or after a restart: the disputes' topic says what
// is not shown yet.
func (s *Service) show(ctx context.Context) {
	s.showMu.Lock()
	defer s.showMu.Unlock()
	s.mu.Lock()
	byRecord := map[record][]*Dispute{}
	var order []record
	for id := range s.unshown {
		d := clone(s.all[id])
		k := openKey(d.Item, d.Key)
		if byRecord[k] == nil {
			order = append(order, k)
		}
		byRecord[k] = append(byRecord[k], d)
	}
	s.mu.Unlock()
	slices.SortFunc(order, func(a, b record) int { return cmp.Or(cmp.Compare(a.item, b.item), cmp.Compare(a.key, b.key)) })
	for _, k := range order {
		if err := s.showRecord(ctx, byRecord[k]); err != nil {
			d := byRecord[k][0]
			s.cfg.Log.Warn("dispute: the record's flag is not shown yet, will retry", "item", d.Item, "dispute", d.ID, "err", err)
		}
	}
}

// showRecord shows the flag of one record, of which ds are the disputes
// that opened or closed.
func (s *Service) showRecord(ctx context.Context, ds []*Dispute) error {
	for _, d := range ds {
		if err := s.flag(ctx, d, flagged(d.State)); err != nil {
			return err
		}
	}
	item, key := ds[0].Item, ds[0].Key
	if it := s.cfg.Catalog.Item(item); it != nil {
		ids, fields := s.openFlag(item, key) // what is open now: a later change is shown later
		f := schemas.Flag{Item: item, Key: key, Disputes: ids, Fields: fields, At: s.cfg.Now().UTC()}
		targets := []FlagTopic{{Topic: topicname.Flags(it.Topic())}}
		if s.cfg.Feeds != nil {
			targets = append(targets, s.cfg.Feeds(item)...)
		}
		var recs []*kgo.Record
		for _, t := range targets {
			rec, err := s.flagRecord(ctx, t, f)
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		if err := s.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("dispute: the flag records of %s: %w", it.Code, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		cur := s.all[d.ID]
		if cur.FlagShown || flagged(cur.State) != flagged(d.State) {
			continue // opened or closed since: the next round shows it
		}
		next := clone(cur)
		next.FlagShown = true
		if err := s.save(ctx, next); err != nil {
			return err
		}
	}
	return nil
}

// openFlag is what a record's flag says now: its open disputes and the
// fields they question.
func (s *Service) openFlag(item, key string) (ids, fields []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids = slices.Clone(s.open[openKey(item, key)])
	for _, id := range ids {
		fields = append(fields, s.all[id].Fields...)
	}
	slices.Sort(fields)
	return ids, slices.Compact(fields)
}

// flagRecord is f on the flags topic t, as t's readers see it.
func (s *Service) flagRecord(ctx context.Context, t FlagTopic, f schemas.Flag) (*kgo.Record, error) {
	if t.Key != nil {
		f.Key = t.Key(f.Key)
	}
	if t.Fields != nil {
		f.Fields = t.Fields(f.Fields)
	}
	id, err := s.flagSchemaID(ctx, t.Topic)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: t.Topic, Key: []byte(f.Key), Value: schemas.Frame(nil, id, f.Encode())}, nil
}

// flagSchemaID is the id of the flag schema under the flags topic's
// subject, registered by the bus (catalog apply and the feeds register it
// too; registering the same schema again answers its id).
func (s *Service) flagSchemaID(ctx context.Context, topic string) (int, error) {
	s.idsMu.Lock()
	defer s.idsMu.Unlock()
	if id, ok := s.flagIDs[topic]; ok {
		return id, nil
	}
	if s.reg == nil {
		return 0, fmt.Errorf("dispute: no schema registry to register the flags of %s", topic)
	}
	ss, err := s.reg.CreateSchema(ctx, topic+"-value", sr.Schema{Schema: schemas.FlagSchema, Type: sr.TypeAvro})
	if err != nil {
		return 0, fmt.Errorf("dispute: register the flag schema of %s: %w", topic, err)
	}
	s.flagIDs[topic] = ss.ID
	return ss.ID, nil
}

// ReconcileFlags makes a flags topic show the open disputes of the item's
// records now, as t's readers see them: a new feed's flags topic gets the
// flags of the records disputed before it started, one that missed changes
// gets them, and a flag still raised for a record with none open is cleared.
// It reads the topic (compacted: a record a flagged key) and writes only
// what differs.
func (s *Service) ReconcileFlags(ctx context.Context, item string, t FlagTopic) error {
	have := map[string][]string{}
	if err := kafkaconn.ReadAll(ctx, s.cfg.Kafka, t.Topic, func(r *kgo.Record) {
		if r.Value == nil {
			delete(have, string(r.Key))
			return
		}
		if f, err := schemas.DecodeFlag(r.Value); err == nil {
			have[f.Key] = f.Disputes
		}
	}); err != nil {
		return fmt.Errorf("dispute: read %s: %w", t.Topic, err)
	}
	s.mu.RLock()
	want := map[string]string{} // the key as t shows it -> its clear key
	for k := range s.open {
		if k.item == item {
			shown := k.key
			if t.Key != nil {
				shown = t.Key(k.key)
			}
			want[shown] = k.key
		}
	}
	s.mu.RUnlock()
	now := s.cfg.Now().UTC()
	var recs []*kgo.Record
	for shown, clear := range want {
		ids, fields := s.openFlag(item, clear)
		if slices.Equal(have[shown], ids) {
			continue
		}
		rec, err := s.flagRecord(ctx, FlagTopic{Topic: t.Topic, Fields: t.Fields}, schemas.Flag{Item: item, Key: shown, Disputes: ids, Fields: fields, At: now})
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	for shown, ids := range have {
		if _, open := want[shown]; !open && len(ids) > 0 {
			rec, err := s.flagRecord(ctx, FlagTopic{Topic: t.Topic}, schemas.Flag{Item: item, Key: shown, At: now})
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	if err := s.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("dispute: write %s: %w", t.Topic, err)
	}
	s.cfg.Log.Info("dispute: flags topic brought in line with the open disputes", "topic", t.Topic, "written", len(recs))
	return nil
}

// upgradeLegacy moves the disputes loaded from a release that wrote flag
// records onto the items' topics to the flags topics: each is shown again
// (on the flags topics, and in PostgreSQL, which is idempotent), and on an
// item topic that is compacted its record's legacy flag records get a
// tombstone, so that compaction removes them. On an item topic that only
// deletes by time they stay until its retention passes (docs/upgrading.md):
// logged once, with when the last of them expires.
func (s *Service) upgradeLegacy(ctx context.Context) error {
	s.mu.Lock()
	var legacy []*Dispute
	for _, d := range s.all {
		if d.Scheme < FlagScheme {
			legacy = append(legacy, clone(d))
		}
	}
	s.mu.Unlock()
	if len(legacy) == 0 {
		return nil
	}
	slices.SortFunc(legacy, func(a, b *Dispute) int { return cmp.Compare(a.ID, b.ID) })
	var tombs []*kgo.Record
	expire := map[string]time.Time{} // item topic kept by time -> when its last legacy flag expires
	seen := map[record]bool{}
	for _, d := range legacy {
		it := s.cfg.Catalog.Item(d.Item)
		if it == nil || seen[openKey(d.Item, d.Key)] {
			continue
		}
		seen[openKey(d.Item, d.Key)] = true
		tc := s.cfg.Catalog.TopicConfig(it)
		if strings.Contains(tc.CleanupPolicy, "compact") {
			tombs = append(tombs, &kgo.Record{Topic: it.Topic(), Key: schemas.LegacyFlagKey(d.Key),
				Headers: []kgo.RecordHeader{{Key: schemas.HeaderKind, Value: []byte(schemas.KindFlag)}}})
			continue
		}
		last := cmp.Or(d.Closed, d.Raised)
		if tc.RetentionMs > 0 {
			if e := last.Add(time.Duration(tc.RetentionMs) * time.Millisecond); e.After(expire[it.Topic()]) {
				expire[it.Topic()] = e
			}
		} else {
			expire[it.Topic()] = time.Time{} // kept for ever
		}
	}
	if len(tombs) > 0 {
		tc, err := kafkaconn.NewClient(s.cfg.Kafka, kgo.RecordPartitioner(legacyPartitioner()))
		if err != nil {
			return err
		}
		err = tc.ProduceSync(ctx, tombs...).FirstErr()
		tc.Close()
		if err != nil {
			return fmt.Errorf("dispute: tombstones over the legacy flag records: %w", err)
		}
	}
	for topic, e := range expire {
		s.cfg.Log.Warn("dispute: legacy flag records stay on an item topic that deletes by time only, until its retention passes; see docs/upgrading.md",
			"topic", topic, "expire", e, "flags_topic", topicname.Flags(topic))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range legacy {
		next := clone(s.all[d.ID])
		next.Scheme, next.FlagShown = FlagScheme, false
		if err := s.save(ctx, next); err != nil {
			return err
		}
	}
	s.cfg.Log.Info("dispute: flags moved to the flags topics", "disputes", len(legacy), "tombstones", len(tombs))
	return nil
}

// legacyPartitioner partitions a tombstone over a legacy flag record as the
// record was (the door's partitioner, murmur2 of the business key), so that
// compaction meets both.
func legacyPartitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
		byKey := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
		return func(r *kgo.Record, n int) int {
			if k, ok := schemas.LegacyFlagBusinessKey(r.Key); ok {
				return byKey.Partition(&kgo.Record{Key: []byte(k)}, n)
			}
			return byKey.Partition(r, n)
		}
	})
}

// flag sets or clears the record's flag in PostgreSQL.
func (s *Service) flag(ctx context.Context, d *Dispute, open bool) error {
	if s.cfg.DB == nil {
		return nil
	}
	var err error
	if open {
		_, err = s.cfg.DB.Exec(ctx, `INSERT INTO jutong.disputes_open (item, key, dispute_id, fields, raised_at, due) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING`, d.Item, d.Key, d.ID, d.Fields, d.Raised, d.Due)
	} else {
		_, err = s.cfg.DB.Exec(ctx, `DELETE FROM jutong.disputes_open WHERE item = $1 AND key = $2 AND dispute_id = $3`, d.Item, d.Key, d.ID)
	}
	if err != nil {
		return fmt.Errorf("dispute: flag %s: %w", d.ID, err)
	}
	return nil
}
