package bus

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/jutong/jutong/access"
	"github.com/jutong/jutong/audit"
	"github.com/jutong/jutong/control"
	"github.com/jutong/jutong/feed"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/producers"
)

// feedRun is a grant's running feed.
type feedRun struct {
	topic  string
	cancel context.CancelFunc
	done   chan struct{}
}

// startControl opens the control plane (which reconciles the ACLs and starts
// the feeds of the active grants), its tick loop, the read auditor, and the
// audit trail's copy into ClickHouse.
func (b *Bus) startControl(ctx, rctx context.Context) error {
	log := b.cfg.Log.With("component", "control")
	var err error
	if b.audit, err = audit.NewWriter(b.kafka); err != nil {
		return err
	}
	b.Control, err = control.Open(ctx, control.Config{
		Catalog: b.cfg.Catalog, Kafka: b.kafka, Audit: b.audit, Published: b.published,
		OnGrants: b.applyGrants, Now: b.cfg.Now, Log: log,
	})
	if err != nil {
		return err
	}
	b.Metrics.MustRegister(b.Control.Collector())
	b.registerCatalogMetrics()
	every := b.cfg.ControlEvery
	if every <= 0 {
		every = time.Minute
	}
	b.wg.Go(func() { b.Control.Run(rctx, every) })
	if b.reads, err = audit.NewReads(b.kafka, b.resolveRead); err != nil {
		return err
	}
	readEvery := b.cfg.ReadAuditEvery
	if readEvery <= 0 {
		readEvery = time.Minute
	}
	b.wg.Go(func() {
		t := time.NewTicker(readEvery)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if _, err := b.reads.Poll(rctx); err != nil && rctx.Err() == nil {
					log.Warn("read audit failed", "err", err)
				}
				b.subscriberLag(rctx)
			}
		}
	})
	if b.cfg.ClickHouseDSN != "" {
		b.wg.Go(func() {
			if err := audit.ToClickHouse(rctx, b.kafka, b.cfg.ClickHouseDSN, log); err != nil && rctx.Err() == nil {
				log.Error("audit copy to ClickHouse stopped", "err", err)
			}
		})
		quarantined := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_quarantined_events_total",
			Help: "Records refused at the door and kept in the quarantine topic, whoever published them (SDK, gateway, adapters), by item, department and rule."},
			[]string{"item", "department", "rule"})
		b.Metrics.MustRegister(quarantined)
		b.wg.Go(func() {
			seen := func(r producers.Rejected) { quarantined.WithLabelValues(r.Item, r.Department, r.Rule).Inc() }
			if err := chsink.CopyRejects(rctx, b.kafka, b.cfg.ClickHouseDSN, seen, log); err != nil && rctx.Err() == nil {
				log.Error("quarantine copy to ClickHouse stopped", "err", err)
			}
		})
	}
	return nil
}

// registerCatalogMetrics exports what the catalog expects of each item.
func (b *Bus) registerCatalogMetrics() {
	interval := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_item_update_interval_seconds",
		Help: "The longest an item may go without a change under its update frequency (responsibility list), by item, department and frequency."},
		[]string{"item", "department", "frequency"})
	for _, it := range b.cfg.Catalog.Items {
		interval.WithLabelValues(it.Code, it.Source, it.UpdateFrequency).Set(it.UpdateInterval().Seconds())
	}
	b.Metrics.MustRegister(interval)
	b.subLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_subscriber_lag_records",
		Help: "Records a department's consumer groups have yet to read, by department and item (feeds counted under their item)."},
		[]string{"department", "item"})
	b.Metrics.MustRegister(b.subLag)
}

// subscriberLag sets the departments' lag from their groups' committed
// offsets and the topics' ends.
func (b *Bus) subscriberLag(ctx context.Context) {
	admin, err := b.kafka.Client()
	if err != nil {
		return
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return
	}
	lags, err := adm.Lag(ctx, groups.Groups()...)
	if err != nil {
		return
	}
	sum := map[[2]string]int64{}
	for _, gl := range lags {
		for _, l := range gl.Lag.Sorted() {
			if dept, item, _, ok := b.resolveRead(gl.Group, l.Topic); ok {
				sum[[2]string{dept, item}] += l.Lag
			}
		}
	}
	b.subLag.Reset()
	for k, n := range sum {
		b.subLag.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
}

// AuditReads audits the departments' reads and updates their lag now (the
// bus does it every ReadAuditEvery).
func (b *Bus) AuditReads(ctx context.Context) ([]audit.Event, error) {
	evs, err := b.reads.Poll(ctx)
	b.subscriberLag(ctx)
	return evs, err
}

// published says whether an item's topic has any record.
func (b *Bus) published(ctx context.Context, item string) (bool, error) {
	admin, err := b.kafka.Client()
	if err != nil {
		return false, err
	}
	defer admin.Close()
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, item)
	if err != nil {
		return false, err
	}
	any := false
	ends.Each(func(o kadm.ListedOffset) { any = any || o.Offset > 0 })
	return any, nil
}

// FeedTopic is the topic a grant reads: the item's own, or its feed.
func FeedTopic(g control.Grant, p *feed.Projection) string {
	if p.Identity() {
		return p.Source.Topic()
	}
	return feed.Topic(g.Department, g.Item, g.ID)
}

func feedGrant(g control.Grant) feed.Grant {
	return feed.Grant{ID: g.ID, Department: g.Department, Item: g.Item, Fields: g.Fields, Grade: g.Grade}
}

// applyGrants makes Kafka match the active grants: a feed for each grant
// that masks or drops fields, and the ACLs (the catalog's plus a read per
// grant, on the item's topic or on the grant's feed).
func (b *Bus) applyGrants(ctx context.Context, grants []control.Grant) error {
	var reads []access.Read
	want := map[string]control.Grant{}
	for _, g := range grants {
		it := b.cfg.Catalog.Item(g.Item)
		if it == nil {
			continue
		}
		p := feed.Project(it, feedGrant(g))
		reads = append(reads, access.Read{Department: g.Department, Topic: FeedTopic(g, p)})
		if !p.Identity() {
			want[g.ID] = g
		}
	}
	if err := b.syncFeeds(ctx, want); err != nil {
		return err
	}
	admin, err := b.kafka.Client()
	if err != nil {
		return err
	}
	defer admin.Close()
	added, removed, err := access.Reconcile(ctx, kadm.NewClient(admin), access.Desired(b.cfg.Catalog, producers.QuarantineTopic, producers.CheckpointTopic, reads...))
	if err != nil {
		return err
	}
	if len(added)+len(removed) > 0 {
		b.cfg.Log.Info("ACLs reconciled with the catalog and the grants", "added", len(added), "removed", len(removed))
		var evs []audit.Event
		for _, a := range added {
			evs = append(evs, audit.Event{Kind: audit.ACLAdded, Department: deptOf(a.Principal), Actor: "jutong", Detail: a.String()})
		}
		for _, a := range removed {
			evs = append(evs, audit.Event{Kind: audit.ACLRemove, Department: deptOf(a.Principal), Actor: "jutong", Detail: a.String()})
		}
		if err := b.audit.Write(ctx, evs...); err != nil {
			b.cfg.Log.Error("audit write failed", "err", err)
		}
	}
	return nil
}

// deptOf turns "User:dept.health" into "health".
func deptOf(principal string) string {
	return strings.TrimPrefix(principal, access.PrincipalPrefix)
}

// syncFeeds runs a feed for every grant in want and stops the others. A new
// feed's topic exists before syncFeeds returns, so that a department granted
// access finds it at once.
func (b *Bus) syncFeeds(ctx context.Context, want map[string]control.Grant) error {
	b.feedMu.Lock()
	defer b.feedMu.Unlock()
	for id, f := range b.feeds {
		if _, ok := want[id]; !ok {
			f.cancel()
			<-f.done
			delete(b.feeds, id)
			b.cfg.Log.Info("feed stopped", "topic", f.topic)
		}
	}
	for id, g := range want {
		if _, ok := b.feeds[id]; ok {
			continue
		}
		it := b.cfg.Catalog.Item(g.Item)
		sink, err := feed.NewSink(b.kafka, b.regURL, it, feedGrant(g), b.cfg.Catalog.TopicConfig(it))
		if err != nil {
			return err
		}
		if err := sink.Prepare(ctx, nil); err != nil {
			sink.Close()
			return err
		}
		r, err := pipeline.New(b.pcfg, sink)
		if err != nil {
			sink.Close()
			return err
		}
		fctx, cancel := context.WithCancel(context.Background())
		f := &feedRun{topic: sink.FeedTopic(), cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(f.done)
			defer sink.Close()
			if err := r.Run(fctx); err != nil && !errors.Is(err, context.Canceled) {
				b.cfg.Log.Error("feed stopped", "topic", f.topic, "err", err)
			}
		}()
		b.feeds[id] = f
		b.cfg.Log.Info("feed started", "topic", f.topic, "grant", id)
	}
	return nil
}

func (b *Bus) stopFeeds() {
	b.feedMu.Lock()
	defer b.feedMu.Unlock()
	for id, f := range b.feeds {
		f.cancel()
		<-f.done
		delete(b.feeds, id)
	}
}

// resolveRead attributes a consumer group's read of a topic: the department
// whose group it is, the item, and the grant it reads under.
func (b *Bus) resolveRead(group, topic string) (dept, item, grant string, ok bool) {
	dept, _, found := strings.Cut(group, ".")
	if !found || b.cfg.Catalog.Department(dept) == nil {
		return "", "", "", false
	}
	if fd, fi, fg, isFeed := audit.SplitFeed(topic, feed.TopicPrefix); isFeed {
		return fd, fi, fg, fd == dept
	}
	if b.cfg.Catalog.Item(topic) == nil {
		return "", "", "", false
	}
	for _, g := range b.Control.Grants() {
		if g.Department == dept && g.Item == topic {
			grant = g.ID
		}
	}
	return dept, topic, grant, true
}
