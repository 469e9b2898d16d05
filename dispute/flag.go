package dispute

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/schemas"
)

// show makes the flags show the disputes that opened or closed: for each
// record concerned, PostgreSQL's flag table, then one flag record on the
// item's topic naming the record's open disputes (schemas.Flag: readers of
// the item in clear see the change), then OnFlag (the feeds re-emit the
// record); then the disputes are saved as shown. What fails is logged and
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
		ids := s.OpenOn(item, key) // what is open now: a later change is shown later
		f := schemas.Flag{Item: item, Key: key, Disputes: ids, At: s.cfg.Now().UTC()}
		rec := &kgo.Record{Topic: it.Topic(), Key: schemas.FlagKey(key), Value: f.JSON(), Headers: []kgo.RecordHeader{
			{Key: schemas.HeaderKind, Value: []byte(schemas.KindFlag)},
			{Key: schemas.HeaderDisputes, Value: []byte(strings.Join(ids, ","))},
		}}
		if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			return fmt.Errorf("dispute: the flag record on %s: %w", it.Topic(), err)
		}
	}
	if s.cfg.OnFlag != nil {
		s.cfg.OnFlag(ctx, item, key)
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

// flagPartitioner partitions a flag record as the changes of its record
// (the door's partitioner, murmur2 of the business key), so that it is
// ordered with them; other records by their key, as the default.
func flagPartitioner() kgo.Partitioner {
	return kgo.BasicConsistentPartitioner(func(topic string) func(*kgo.Record, int) int {
		byKey := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
		return func(r *kgo.Record, n int) int {
			if k, ok := schemas.FlagBusinessKey(r.Key); ok {
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
