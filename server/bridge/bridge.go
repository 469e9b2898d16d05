// Package bridge carries the items one bus granted another from the
// granting (upstream) bus's Kafka into the receiving bus's door, exactly
// once (docs/federation.md).
//
// The bridge is a client of both buses and holds no privilege on either: on
// the upstream bus it is the receiving bus's department there (it reads the
// grants' feeds, masked as the grants say, and nothing else: the upstream's
// ACLs see to it); on the receiving bus it is the upstream bus's department
// (Department.Bus), the source of the received items (catalog.Upstream),
// publishing them to its inbox as any department does, so that the
// receiving door checks every record, stamps it and keeps what it refuses.
//
// Exactly once: the receiving side keeps the ledger. Each batch of an
// upstream topic is published to the inbox together with the bridge's
// position on that topic (the next offset of each partition, in the
// department's checkpoints topic) in one Kafka transaction of the
// receiving bus; at start the bridge reads its positions back
// (read-committed) and goes on from there. A crash of the bridge, or of
// either bus, loses or doubles nothing: what was not committed is read
// again, what was is never read again.
//
// Each record keeps its provenance (the upstream bus, its source
// department there, the item, its topic, partition and offset) in the
// received item's field "upstream" (package model/upstream), which the
// door checks. A record that does not fit the item here (an upstream
// schema change the item does not accept, bytes no schema reads) is not
// applied: it goes to the inbox as a refusal, with rule upstream.schema or
// schema.decode, and the door keeps it in the quarantine. An upstream grant
// that is revoked (Kafka refuses the feed) stops its item's flow; the
// bridge records the item's state (flowing, revoked, not granted) in its
// checkpoints topic (Status) and in its metrics, and resumes when a grant
// delivers the item again.
package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/retry"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/model/upstream"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

// Config is what a bridge needs.
type Config struct {
	// Catalog is the receiving bus's catalog; Department the upstream bus's
	// department in it (one with Bus set): the bridge carries the items
	// whose source it is.
	Catalog    *catalog.Catalog
	Department string
	// Downstream is how the bridge reaches the receiving bus, as
	// Department's principal.
	Downstream connect.Config
	// Upstream is how it reaches the upstream bus, as the receiving bus's
	// department there (UpstreamDepartment, whose grants it reads).
	Upstream           connect.Config
	UpstreamDepartment string
	// Rediscover is how often the bridge looks again for the feeds of
	// items not flowing (a grant revoked, not yet approved). Default 10s.
	Rediscover time.Duration
	// MaxBatch bounds the records of one transaction (default 5000).
	MaxBatch int
	// Officers, when set, relay the disputes of received items: up to the
	// upstream bus, and its answers (correction, rejection) back down.
	Officers *Officers
	Logger   *slog.Logger
	// Registerer takes the bridge's metrics (jutong_bridge_*); nil: none.
	Registerer prometheus.Registerer
}

// Bridge is one running bridge.
type Bridge struct {
	cfg   Config
	bus   string                   // the upstream bus's name
	items map[string]*catalog.Item // the received items, by their upstream item code
	pub   *producers.Publisher
	up    *kgo.Client
	upAdm *kadm.Client
	dec   *schemas.Decoder
	reg   *sr.Client
	m     *metrics
	// views are the received items as their upstream records are written
	// (the item without its provenance field), by upstream item code; fast
	// says, per upstream schema id, whether its records are written so (then
	// their bytes are forwarded, not decoded: schemas.Receive).
	views map[string]*schemas.Schema
	fast  map[int]bool
	log   *slog.Logger

	mu     sync.Mutex
	pos    map[string]*Position // by upstream item code
	status map[string]*Status   // by upstream item code
	byTop  map[string]string    // upstream topic -> upstream item code, of the topics read
	relays map[string]*Relay    // by the dispute's id here
	// reported are the offsets last committed upstream (ReadGroup).
	reported map[string]map[int32]int64
}

// Position is the bridge's ledger entry for one item: the upstream topic
// it reads the item from and the next offset of each partition.
type Position struct {
	Item    string          `json:"item"` // the upstream item
	Topic   string          `json:"topic"`
	Offsets map[int32]int64 `json:"offsets"`
	// Records counts what was carried (forwarded and kept) since the
	// topic was first read.
	Records int64     `json:"records"`
	At      time.Time `json:"at"`
}

// The states of a received item's flow.
const (
	Flowing    = "flowing"     // its upstream feed is read
	Revoked    = "revoked"     // the upstream bus refuses the feed that was read: the grant was revoked
	NotGranted = "not_granted" // no upstream feed delivers it to this bus (yet)
)

// Status is a received item's flow, as the bridge last saw it.
type Status struct {
	Item         string    `json:"item"`          // the item here
	UpstreamBus  string    `json:"upstream_bus"`  // where it comes from
	UpstreamItem string    `json:"upstream_item"` // its code there
	State        string    `json:"state"`
	Topic        string    `json:"topic,omitempty"` // the upstream topic read, or last read
	Reason       string    `json:"reason,omitempty"`
	Since        time.Time `json:"since"`
}

// Ledger keys in the department's checkpoints topic.
const (
	positionPrefix = "bridge.position."
	statusPrefix   = "bridge.status."
)

// New checks cfg, connects to both buses and reads the ledger back.
func New(ctx context.Context, cfg Config) (*Bridge, error) {
	if cfg.Catalog == nil {
		return nil, errors.New("bridge: no catalog")
	}
	d := cfg.Catalog.Department(cfg.Department)
	switch {
	case d == nil:
		return nil, fmt.Errorf("bridge: department %q is not in the receiving bus's catalog", cfg.Department)
	case d.Bus == "":
		return nil, fmt.Errorf("bridge: department %s stands for no bus (set its \"bus\" in catalog.json)", cfg.Department)
	case cfg.UpstreamDepartment == "":
		return nil, errors.New("bridge: the upstream department (this bus's department on the upstream bus) is not set")
	}
	if err := cfg.Upstream.Validate(); err != nil {
		return nil, fmt.Errorf("bridge: upstream: %w", err)
	}
	if err := cfg.Downstream.Validate(); err != nil {
		return nil, fmt.Errorf("bridge: downstream: %w", err)
	}
	if cfg.Rediscover <= 0 {
		cfg.Rediscover = 10 * time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 5000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{cfg: cfg, bus: d.Bus, items: map[string]*catalog.Item{}, log: cfg.Logger.With("bridge", d.Bus),
		pos: map[string]*Position{}, status: map[string]*Status{}, byTop: map[string]string{}, relays: map[string]*Relay{}, reported: map[string]map[int32]int64{}}
	b.views, b.fast = map[string]*schemas.Schema{}, map[int]bool{}
	for _, it := range cfg.Catalog.Items {
		if it.Source == d.Code && it.Upstream != nil {
			b.items[it.Upstream.Item] = it
			var fields []*catalog.Field
			for _, f := range it.Fields {
				if f.Name != catalog.UpstreamField {
					fields = append(fields, f)
				}
			}
			view, err := schemas.For(it.WithFields(fields))
			if err != nil {
				return nil, fmt.Errorf("bridge: %s: %w", it.Code, err)
			}
			b.views[it.Upstream.Item] = view
		}
	}
	if len(b.items) == 0 {
		return nil, fmt.Errorf("bridge: the catalog has no item received from %s (an item with \"upstream\" and source %s)", d.Bus, d.Code)
	}
	var err error
	if b.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	for _, kind := range []string{"publish", "auth", "fetch", "discover", "status", "dispute", "report"} {
		b.m.errors.WithLabelValues(b.bus, kind) // exported from the start: a rate of 0, not no series
	}
	b.pub, err = producers.New(ctx, cfg.Catalog, d.Code, cfg.Downstream,
		producers.Transactional(d.Principal+".bridge"), producers.System("bridge:"+d.Bus), producers.Adapter("bridge"),
		producers.Logger(b.log), producers.Metrics(cfg.Registerer))
	if err != nil {
		return nil, fmt.Errorf("bridge: the receiving bus: %w", err)
	}
	up := append(cfg.Upstream.Kafka(), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(16<<20), kgo.FetchMaxWait(200*time.Millisecond))
	if b.up, err = kgo.NewClient(append(up, cfg.Upstream.KafkaOpts...)...); err != nil {
		b.pub.Close()
		return nil, fmt.Errorf("bridge: the upstream bus: %w", err)
	}
	b.upAdm = kadm.NewClient(b.up)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = b.up.Ping(pctx)
	cancel()
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bridge: the upstream bus refuses %s (a revoked or wrong credential?): %w", cfg.Upstream.User, err)
	}
	reg, err := cfg.Upstream.RegistryClient()
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bridge: the upstream registry: %w", err)
	}
	b.dec, b.reg = schemas.NewDecoder(reg), reg
	if err := b.load(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// load reads the ledger (positions and states) back from the receiving
// bus, read-committed: what a crash left uncommitted is not there.
func (b *Bridge) load(ctx context.Context) error {
	opts := append(b.cfg.Downstream.Kafka(), b.cfg.Downstream.KafkaOpts...)
	var bad error
	err := kafkaconn.ReadAll(ctx, opts, topicname.Checkpoints(b.cfg.Department), func(r *kgo.Record) {
		k := string(r.Key)
		switch {
		case strings.HasPrefix(k, positionPrefix):
			var p Position
			if err := json.Unmarshal(r.Value, &p); err != nil {
				bad = fmt.Errorf("bridge: ledger %s: %w", k, err)
				return
			}
			b.pos[p.Item] = &p
		case strings.HasPrefix(k, statusPrefix):
			var s Status
			if json.Unmarshal(r.Value, &s) == nil {
				b.status[s.UpstreamItem] = &s
			}
		case strings.HasPrefix(k, relayPrefix):
			var rl Relay
			if json.Unmarshal(r.Value, &rl) == nil {
				b.relays[rl.Down] = &rl
			}
		}
	})
	if err != nil {
		return fmt.Errorf("bridge: read the ledger (%s): %w", topicname.Checkpoints(b.cfg.Department), err)
	}
	return bad
}

// Close stops the clients.
func (b *Bridge) Close() {
	if b.up != nil {
		b.up.Close()
	}
	if b.pub != nil {
		b.pub.Close()
	}
}

// Relays lists the disputes relayed so far.
func (b *Bridge) Relays() []Relay {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Relay, 0, len(b.relays))
	for _, r := range b.relays {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Down < out[j].Down })
	return out
}

// Statuses lists the received items' states.
func (b *Bridge) Statuses() []Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Status
	for _, s := range b.status {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Item < out[j].Item })
	return out
}

// Run carries records until ctx ends; it returns nil then, or the error
// that stopped it (the receiving bus unreachable past retries is not one:
// it retries until ctx ends).
func (b *Bridge) Run(ctx context.Context) error {
	if b.cfg.Officers != nil {
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); b.relayDisputes(rctx) }()
		defer func() { stop(); <-done }()
	}
	if err := b.discover(ctx); err != nil && ctx.Err() == nil {
		b.log.Warn("bridge: discovery", "err", err)
	}
	next := time.Now().Add(b.cfg.Rediscover)
	nextReport := time.Now().Add(2 * time.Second)
	defer b.reportReads(context.WithoutCancel(ctx))
	for ctx.Err() == nil {
		if time.Now().After(nextReport) {
			b.reportReads(ctx)
			nextReport = time.Now().Add(2 * time.Second)
		}
		if time.Now().After(next) {
			if err := b.discover(ctx); err != nil && ctx.Err() == nil {
				b.m.errors.WithLabelValues(b.bus, "discover").Inc()
				b.log.Warn("bridge: discovery", "err", err)
			}
			next = time.Now().Add(b.cfg.Rediscover)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := b.up.PollRecords(pctx, b.cfg.MaxBatch)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		b.fetchErrors(ctx, fs)
		batches := map[string][]*kgo.Record{}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				batches[p.Topic] = append(batches[p.Topic], p.Records...)
			}
			if code, ok := b.topicItem(p.Topic); ok && p.HighWatermark >= 0 {
				b.m.high.WithLabelValues(b.bus, b.items[code].Code, itoa(p.Partition)).Set(float64(p.HighWatermark))
			}
		})
		topics := make([]string, 0, len(batches))
		for t := range batches {
			topics = append(topics, t)
		}
		sort.Strings(topics)
		for _, t := range topics {
			if err := b.carry(ctx, t, batches[t]); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
	return nil
}

func itoa(p int32) string { return strconv.FormatInt(int64(p), 10) }

// ReadGroup is the consumer group the bridge reports its reads under on
// the upstream bus (this bus's department's there: "<dept>.bridge"), so
// that the upstream's audit attributes them to the grants, as any
// department's reads: its committed offsets follow the positions the
// receiving bus committed (the ledger is the receiving bus's; these are a
// report, never read back).
func (b *Bridge) ReadGroup() string { return b.cfg.UpstreamDepartment + ".bridge" }

// reportReads commits the bridge's positions to ReadGroup upstream.
func (b *Bridge) reportReads(ctx context.Context) {
	b.mu.Lock()
	offsets := kadm.Offsets{}
	changed := false
	for code, p := range b.pos {
		reading := false
		for t, c := range b.byTop {
			reading = reading || (c == code && t == p.Topic)
		}
		if !reading {
			continue
		}
		for part, o := range p.Offsets {
			offsets.Add(kadm.Offset{Topic: p.Topic, Partition: part, At: o, LeaderEpoch: -1})
			if b.reported[p.Topic][part] != o {
				changed = true
			}
		}
	}
	b.mu.Unlock()
	if !changed {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := b.upAdm.CommitOffsets(cctx, b.ReadGroup(), offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		b.m.errors.WithLabelValues(b.bus, "report").Inc()
		b.log.Warn("bridge: report the reads upstream", "group", b.ReadGroup(), "err", err)
		return
	}
	b.mu.Lock()
	offsets.Each(func(o kadm.Offset) {
		if b.reported[o.Topic] == nil {
			b.reported[o.Topic] = map[int32]int64{}
		}
		b.reported[o.Topic][o.Partition] = o.At
	})
	b.mu.Unlock()
}

func (b *Bridge) topicItem(topic string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	code, ok := b.byTop[topic]
	return code, ok
}

// fetchErrors handles the partitions the upstream refused: a feed the
// bridge may no longer read (its grant revoked) stops its item.
func (b *Bridge) fetchErrors(ctx context.Context, fs kgo.Fetches) {
	for _, fe := range fs.Errors() {
		if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
			continue
		}
		code, ok := b.topicItem(fe.Topic)
		if !ok {
			continue
		}
		if errors.Is(fe.Err, kerr.TopicAuthorizationFailed) || errors.Is(fe.Err, kerr.UnknownTopicOrPartition) {
			b.stop(ctx, code, fe.Topic, Revoked, fmt.Sprintf("the upstream bus refuses %s: %v (the grant was revoked, or its feed removed)", fe.Topic, fe.Err))
			continue
		}
		kind := "fetch"
		if errors.Is(fe.Err, kerr.SaslAuthenticationFailed) || errors.Is(fe.Err, kerr.IllegalSaslState) {
			kind = "auth" // the credential was revoked or rotated: the bridge waits for a new one
		}
		b.m.errors.WithLabelValues(b.bus, kind).Inc()
		b.log.Warn("bridge: fetch", "kind", kind, "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
	}
}

// stop stops reading an item's topic and records why.
func (b *Bridge) stop(ctx context.Context, code, topic, state, reason string) {
	b.mu.Lock()
	delete(b.byTop, topic)
	b.mu.Unlock()
	b.up.PurgeTopicsFromConsuming(topic)
	b.setStatus(ctx, code, state, topic, reason)
}

// setStatus records an item's state when it changed: in the metrics, the
// log and the ledger (Status).
func (b *Bridge) setStatus(ctx context.Context, code, state, topic, reason string) {
	it := b.items[code]
	b.mu.Lock()
	old := b.status[code]
	same := old != nil && old.State == state && old.Topic == topic
	if !same {
		b.status[code] = &Status{Item: it.Code, UpstreamBus: b.bus, UpstreamItem: code, State: state, Topic: topic, Reason: reason, Since: time.Now().UTC()}
	}
	s := *b.status[code]
	b.mu.Unlock()
	b.m.flowing.WithLabelValues(b.bus, it.Code).Set(boolf(state == Flowing))
	if same {
		return
	}
	b.log.Info("bridge: item state", "item", it.Code, "state", state, "topic", topic, "reason", reason)
	v, _ := json.Marshal(s)
	rec := &kgo.Record{Topic: topicname.Checkpoints(b.cfg.Department), Key: []byte(statusPrefix + code), Value: v}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err := retry.Do(sctx, retry.Backoff{Min: 200 * time.Millisecond, Max: 2 * time.Second}, func() error {
		_, err := b.pub.PublishTx(sctx, it.Code, nil, nil, rec)
		return err
	}, nil)
	if err != nil && ctx.Err() == nil {
		b.m.errors.WithLabelValues(b.bus, "status").Inc()
		b.log.Warn("bridge: record the item's state", "item", it.Code, "err", err)
	}
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// discover finds, for each received item not read yet, the upstream topic
// that delivers it to this bus (the grant's feed, or the item's own topic
// for a grant of every field in clear), and starts reading it where the
// ledger says.
func (b *Bridge) discover(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	listed, err := b.upAdm.ListTopics(dctx)
	if err != nil {
		return fmt.Errorf("list the upstream topics: %w", err)
	}
	feeds := map[string][]string{} // upstream item -> topics delivering it
	for _, t := range listed.Names() {
		if d, item, _, ok := topicname.ParseFeed(t); ok && d == b.cfg.UpstreamDepartment {
			feeds[item] = append(feeds[item], t)
		} else if !topicname.Internal(t) {
			feeds[t] = append(feeds[t], t) // an item's own topic (the ACLs show only granted ones): granted in clear
		}
	}
	unmapped := 0
	for item := range feeds {
		if _, ok := b.items[item]; !ok {
			unmapped++
			b.log.Warn("bridge: a granted upstream item this catalog does not receive: not read (its records stay on the upstream bus until the catalog names it)",
				"upstream_item", item, "topics", feeds[item])
		}
	}
	b.m.unmapped.WithLabelValues(b.bus).Set(float64(unmapped))
	codes := make([]string, 0, len(b.items))
	for code := range b.items {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	add := map[string]map[int32]kgo.Offset{}
	for _, code := range codes {
		b.mu.Lock()
		reading := ""
		for t, c := range b.byTop {
			if c == code {
				reading = t
			}
		}
		pos := b.pos[code]
		b.mu.Unlock()
		if reading != "" {
			continue
		}
		topics := feeds[code]
		if len(topics) == 0 {
			st := NotGranted
			reason := fmt.Sprintf("no grant of %s on %s delivers %s to %s: apply for it there", b.bus, b.bus, code, b.cfg.UpstreamDepartment)
			if old := b.statusOf(code); old != nil && (old.State == Revoked || old.State == Flowing) {
				st, reason = Revoked, fmt.Sprintf("the grant delivering %s is no longer active on %s", code, b.bus)
			}
			b.setStatus(ctx, code, st, "", reason)
			continue
		}
		topic := choose(topics, pos)
		td := listed[topic]
		offsets := map[int32]kgo.Offset{}
		for p := range td.Partitions {
			o := kgo.NewOffset().AtStart()
			if pos != nil && pos.Topic == topic {
				if n, ok := pos.Offsets[p]; ok {
					o = kgo.NewOffset().At(n)
				}
			}
			offsets[p] = o
		}
		if pos == nil || pos.Topic != topic {
			b.mu.Lock()
			b.pos[code] = &Position{Item: code, Topic: topic, Offsets: map[int32]int64{}}
			b.mu.Unlock()
		}
		add[topic] = offsets
		b.mu.Lock()
		b.byTop[topic] = code
		b.mu.Unlock()
		b.setStatus(ctx, code, Flowing, topic, "")
	}
	if len(add) > 0 {
		b.up.AddConsumePartitions(add)
	}
	return nil
}

func (b *Bridge) statusOf(code string) *Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status[code]
}

// choose picks the topic to read an item from: the one the ledger names if
// it is still granted, else the newest grant's feed (the last by name:
// grant ids grow), else the item's own topic.
func choose(topics []string, pos *Position) string {
	if pos != nil && slices.Contains(topics, pos.Topic) {
		return pos.Topic
	}
	sorted := slices.Clone(topics)
	sort.Strings(sorted)
	for i := len(sorted) - 1; i >= 0; i-- {
		if strings.HasPrefix(sorted[i], topicname.FeedPrefix) {
			return sorted[i]
		}
	}
	return sorted[len(sorted)-1]
}

// carry publishes one upstream topic's batch into the receiving bus's
// inbox, with the bridge's new position, in one transaction; it retries
// until it commits (or ctx ends): the position moves only when it did.
func (b *Bridge) carry(ctx context.Context, topic string, recs []*kgo.Record) error {
	code, ok := b.topicItem(topic)
	if !ok {
		return nil // stopped meanwhile: read again when it flows again
	}
	it := b.items[code]
	b.mu.Lock()
	pos := b.pos[code]
	next := Position{Item: code, Topic: topic, Offsets: map[int32]int64{}, Records: pos.Records}
	for p, o := range pos.Offsets {
		next.Offsets[p] = o
	}
	b.mu.Unlock()
	fresh := recs[:0:0]
	for _, r := range recs {
		if o, ok := next.Offsets[r.Partition]; ok && r.Offset < o {
			continue // already carried (a fetch from before a restart's position)
		}
		fresh = append(fresh, r)
	}
	if len(fresh) == 0 {
		return nil
	}
	if enc, ok := b.forward(ctx, code, fresh); ok {
		for _, r := range fresh {
			next.Offsets[r.Partition] = r.Offset + 1
			next.Records++
		}
		return b.commit(ctx, it, code, &next, func(ledger *kgo.Record) (int, int, error) {
			return len(enc), 0, b.pub.PublishEncodedTx(ctx, it.Code, enc, ledger)
		})
	}
	var events []*schemas.Event
	var rejects []producers.Reject
	for _, r := range fresh {
		e, v := b.translate(ctx, it, r)
		if v != nil {
			rejects = append(rejects, producers.Reject{Event: e, Violation: v, Raw: r.Value})
		} else {
			events = append(events, e)
		}
		next.Offsets[r.Partition] = r.Offset + 1
		next.Records++
	}
	return b.commit(ctx, it, code, &next, func(ledger *kgo.Record) (int, int, error) {
		results, err := b.pub.PublishTx(ctx, it.Code, events, rejects, ledger)
		if err != nil {
			return 0, 0, err
		}
		// The receiving bus's rules, checked here as the door will: a
		// record they refuse went to the inbox as a refusal, and the door
		// keeps it.
		refused := 0
		for _, r := range results[:len(events)] {
			var v *rules.Violation
			if errors.As(r.Err, &v) {
				refused++
				b.log.Warn("bridge: a record the receiving bus refuses (kept in its quarantine)", "item", it.Code, "key", v.Key, "rule", v.Rule, "field", v.Field, "reason", v.Reason)
			}
		}
		return len(events) - refused, len(rejects) + refused, nil
	})
}

// commit publishes a batch (publish: forwarded and kept counts) with the
// bridge's new position next, in one transaction of the receiving bus,
// retrying until it commits; then the position moves.
func (b *Bridge) commit(ctx context.Context, it *catalog.Item, code string, next *Position, publish func(ledger *kgo.Record) (forwarded, kept int, err error)) error {
	next.At = time.Now().UTC()
	val, err := json.Marshal(next)
	if err != nil {
		return err
	}
	ledger := &kgo.Record{Topic: topicname.Checkpoints(b.cfg.Department), Key: []byte(positionPrefix + code), Value: val}
	start := time.Now()
	var forwarded, kept int
	_, err = retry.Do(ctx, retry.Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}, func() error {
		var err error
		forwarded, kept, err = publish(ledger)
		return err
	}, func(attempt int, err error, wait time.Duration) {
		b.m.errors.WithLabelValues(b.bus, "publish").Inc()
		b.log.Warn("bridge: publish to the receiving bus (retrying)", "item", it.Code, "attempt", attempt, "wait", wait, "err", err)
	})
	if err != nil {
		return err
	}
	b.m.commit.WithLabelValues(b.bus).Observe(time.Since(start).Seconds())
	b.m.records.WithLabelValues(b.bus, it.Code, "forwarded").Add(float64(forwarded))
	b.m.records.WithLabelValues(b.bus, it.Code, "kept").Add(float64(kept))
	b.mu.Lock()
	b.pos[code] = next
	b.mu.Unlock()
	for p, o := range next.Offsets {
		b.m.position.WithLabelValues(b.bus, it.Code, itoa(p)).Set(float64(o))
	}
	return nil
}

// forward makes the received records of a batch from the upstream records'
// bytes (schemas.Receive), when every one is written with the item's
// upstream layout; ok false sends the batch the slow way (translate: an
// upstream schema change, an unreadable record).
func (b *Bridge) forward(ctx context.Context, code string, recs []*kgo.Record) (_ []producers.Encoded, ok bool) {
	view := b.views[code]
	src := schemas.Source{Department: b.cfg.Department, System: "bridge:" + b.bus, Adapter: "bridge"}
	now := time.Now()
	out := make([]producers.Encoded, 0, len(recs))
	for _, r := range recs {
		id, payload, err := schemas.Unframe(r.Value)
		if err != nil || !b.fastFor(ctx, id, view) {
			return nil, false
		}
		prov := upstream.Provenance{Bus: b.bus, Item: code, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
		v, err := view.Receive(make([]byte, 0, len(payload)+160), payload, func(dept string) string {
			prov.Department = dept
			return prov.String()
		}, src, now)
		if err != nil || len(v)+5 > view.Item.RecordLimit() {
			// Unreadable, or too large for the item here: the slow way
			// keeps it with its rule (record.size), and nothing stalls
			// on a record Kafka would refuse.
			return nil, false
		}
		out = append(out, producers.Encoded{Key: string(r.Key), Payload: v})
	}
	return out, true
}

// fastFor says whether records of the upstream schema id are written with
// view's layout: the same Avro schema in Parsing Canonical Form (names,
// types, order; not the docs). Asked of the upstream registry once per id.
func (b *Bridge) fastFor(ctx context.Context, id int, view *schemas.Schema) bool {
	b.mu.Lock()
	ok, known := b.fast[id]
	b.mu.Unlock()
	if known {
		return ok
	}
	ss, err := b.reg.SchemaByID(ctx, id)
	if err != nil {
		return false // not cached: asked again (the slow way decodes meanwhile)
	}
	w, err := schemas.ParseAvro(ss.Schema)
	ok = err == nil && w.Fingerprint() == view.Avro.Fingerprint()
	b.mu.Lock()
	b.fast[id] = ok
	b.mu.Unlock()
	return ok
}

// translate turns an upstream record into the received item's event, with
// its provenance; a record that does not fit the item comes back with its
// violation (to be kept, not applied).
func (b *Bridge) translate(ctx context.Context, it *catalog.Item, r *kgo.Record) (*schemas.Event, *rules.Violation) {
	prov := upstream.Provenance{Bus: b.bus, Item: it.Upstream.Item, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	ue, err := b.dec.Decode(ctx, r.Value)
	if err != nil {
		e := &schemas.Event{ID: fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.Offset), Op: schemas.OpUpdate, Key: string(r.Key)}
		return e, &rules.Violation{Item: it.Code, Key: e.Key, Rule: rules.SchemaDecode,
			Reason: fmt.Sprintf("the upstream record at %s is not readable: %v", prov, err)}
	}
	prov.Department = ue.Source.Department
	e := &schemas.Event{ID: ue.ID, Op: ue.Op, Key: ue.Key, EventTime: ue.EventTime}
	if ue.Data == nil {
		return e, nil
	}
	e.Data = make(map[string]any, len(it.Fields))
	for name, v := range ue.Data {
		if it.Field(name) == nil || name == catalog.UpstreamField {
			if v == nil {
				continue // an optional field added upstream, not set: nothing lost
			}
			return e, &rules.Violation{Item: it.Code, Key: e.Key, Field: name, Rule: rules.UpstreamSchema,
				Reason: fmt.Sprintf("the upstream record (%s) has the field %s, which %s here does not have: an upstream schema change this item does not accept yet (not applied; kept)", prov, name, it.Code)}
		}
		e.Data[name] = v
	}
	for _, f := range it.Fields {
		if f.Name == catalog.UpstreamField {
			continue
		}
		if _, ok := ue.Data[f.Name]; !ok && f.Required {
			return e, &rules.Violation{Item: it.Code, Key: e.Key, Field: f.Name, Rule: rules.UpstreamSchema,
				Reason: fmt.Sprintf("the upstream record (%s) lacks the field %s, which %s here requires: an upstream schema change this item does not accept (not applied; kept)", prov, f.Name, it.Code)}
		}
	}
	if _, masked := e.Data[it.Key].(string); masked && e.Data[it.Key] != e.Key {
		// A masked key: the feed keys the record by the grant's pseudonym
		// and shows the key's masked form, which is not unique. Here the
		// pseudonym is the key (as the upstream lookups answer it).
		e.Data[it.Key] = e.Key
	}
	e.Data[catalog.UpstreamField] = prov.String()
	return e, nil
}

// ReadStatus reads the received items' states that the bridge of
// department (the upstream bus's department on the receiving bus) recorded
// in its ledger, with the client options opts (the receiving bus's admin's,
// or the department's own): what jutong bridge status prints.
func ReadStatus(ctx context.Context, opts []kgo.Opt, department string) ([]Status, error) {
	latest := map[string]Status{}
	err := kafkaconn.ReadAll(ctx, opts, topicname.Checkpoints(department), func(r *kgo.Record) {
		if !strings.HasPrefix(string(r.Key), statusPrefix) {
			return
		}
		var s Status
		if json.Unmarshal(r.Value, &s) == nil {
			latest[s.UpstreamItem] = s
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bridge: read %s: %w", topicname.Checkpoints(department), err)
	}
	out := make([]Status, 0, len(latest))
	for _, s := range latest {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Item < out[j].Item })
	return out, nil
}
