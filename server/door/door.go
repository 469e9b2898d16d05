package door

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/promutil"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// Config configures a Door.
type Config struct {
	Catalog *catalog.Catalog
	// Kafka connects as the bus: the door reads the inboxes and writes the
	// item topics, the quarantine, the rejects topics and its id index.
	Kafka []kgo.Opt
	// Registry reaches the schema registry as the bus: sr.URLs, sr.BasicAuth,
	// sr.DialTLSConfig.
	Registry []sr.ClientOpt
	// Decoder, when set, is shared with the pipelines (one schema cache).
	Decoder *schemas.Decoder
	// Window is how long an accepted event id is remembered (default 24h).
	Window time.Duration
	// Group is the inboxes' consumer group (default jutong.door); the
	// door's transactional ids begin with it too.
	Group string
	// InstanceID tells this bus instance's transactional ids apart from
	// another's; a stable one (the pipelines' --instance-id) lets a
	// restarted instance fence its former self at once. Empty: a random one.
	InstanceID string
	// OnCorrection, when set, is told (after the transaction committed) of
	// each accepted change that names the dispute it corrects: the dispute,
	// the department that sent it, the change's item, key and event id.
	OnCorrection func(dispute, dept, item, key, eventID string)
	// Forwarded, when set, is handed each record the door forwards to an
	// item's topic (with its position, before its transaction commits), and
	// the event it decoded from it, when decoding the record would give that
	// very event (the inbox record was written with the item's current
	// schema): the pipelines of the same process take it instead of
	// decoding the record again (pipeline.DecodeCache.Put).
	Forwarded func(rec *kgo.Record, ev *schemas.Event)
	// Disputes, when set, lists the open disputes of a record (item, key):
	// an accepted change of a disputed record carries their ids in the
	// header jutong.disputes (schemas.HeaderDisputes) on the item's topic.
	Disputes func(item, key string) []string
	Now      func() time.Time
	Log      *slog.Logger
	Metrics  prometheus.Registerer
}

// MaxWindow is the longest idempotency window: the retention of the id
// index topic (topicname.DoorIDs).
const MaxWindow = 48 * time.Hour

// Door checks records against the contract and forwards them.
type Door struct {
	cfg    Config
	reg    *sr.Client
	dec    *schemas.Decoder
	ids    idIndex
	topics *topicSet
	m      *metrics

	mu       sync.Mutex
	prepared map[string]*prepared // by item code
	itemOfID map[int]string       // schema id -> item code ("": none)

	admitMu sync.Mutex
	admit   *kgo.Client // the gateway's transactional producer
}

type prepared struct {
	schema *schemas.Schema
	id     int
}

// Validate says what is wrong with the configuration (after its defaults).
func (cfg Config) Validate() error {
	if cfg.Catalog == nil || len(cfg.Kafka) == 0 || len(cfg.Registry) == 0 {
		return errors.New("door: a catalog, Kafka options and a registry URL are required")
	}
	if cfg.Window > MaxWindow {
		return fmt.Errorf("door: an idempotency window of %s is longer than the %s that %s keeps ids", cfg.Window, MaxWindow, topicname.DoorIDs)
	}
	return nil
}

// defaults fills in what is not set.
func (cfg *Config) defaults() {
	if cfg.Window <= 0 {
		cfg.Window = 24 * time.Hour
	}
	if cfg.Group == "" {
		cfg.Group = "jutong.door"
	}
	if cfg.InstanceID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		cfg.InstanceID = hex.EncodeToString(b[:])
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
}

// New loads the id index and returns a door; Run consumes the inboxes,
// Admit serves the gateway; Close releases it.
func New(ctx context.Context, cfg Config) (*Door, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg, err := sr.NewClient(cfg.Registry...)
	if err != nil {
		return nil, fmt.Errorf("door: %w", err)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("door: %w", err)
	}
	d := &Door{cfg: cfg, reg: reg, dec: cfg.Decoder, ids: idIndex{window: cfg.Window}, m: m,
		topics:   &topicSet{kafka: cfg.Kafka, have: map[string]bool{}},
		prepared: map[string]*prepared{}, itemOfID: map[int]string{}}
	if d.dec == nil {
		d.dec = schemas.NewDecoder(reg)
	}
	if err := d.ids.load(ctx, cfg.Kafka, cfg.Now()); err != nil {
		return nil, fmt.Errorf("door: load the accepted ids: %w", err)
	}
	return d, nil
}

// Group is the inboxes' consumer group: its committed offsets say how far
// the door has forwarded.
func (d *Door) Group() string { return d.cfg.Group }

// Accepted says where the door put the change with this event id, when it
// accepted it within its window (as this instance knows: what it read at
// its start, and what it accepted since).
func (d *Door) Accepted(item, eventID string) (Position, bool) {
	return d.ids.lookup(item, eventID, time.Now())
}

// Close releases the gateway's producer.
func (d *Door) Close() {
	d.admitMu.Lock()
	defer d.admitMu.Unlock()
	if d.admit != nil {
		d.admit.Close()
		d.admit = nil
	}
}

// itemOf is the catalog item whose subject (<item>-value) a Confluent-framed
// value's schema id is registered under ("" for none), asked of the
// registry once per id.
func (d *Door) itemOf(ctx context.Context, value []byte) (string, error) {
	id, _, err := schemas.Unframe(value)
	if err != nil {
		return "", nil
	}
	d.mu.Lock()
	item, known := d.itemOfID[id]
	d.mu.Unlock()
	if known {
		return item, nil
	}
	uses, err := d.reg.SchemaUsagesByID(ctx, id)
	var re *sr.ResponseError
	switch {
	case errors.As(err, &re) && re.StatusCode == 404:
		uses = nil
	case err != nil:
		return "", fmt.Errorf("door: which subject schema %d is of: %w", id, err)
	}
	for _, u := range uses {
		if code, ok := strings.CutSuffix(u.Subject, "-value"); ok && d.cfg.Catalog.Item(code) != nil {
			item = code
			break
		}
	}
	d.mu.Lock()
	d.itemOfID[id] = item
	d.mu.Unlock()
	return item, nil
}

// prepare registers (or looks up) an item's schema once.
func (d *Door) prepare(ctx context.Context, it *catalog.Item) (*prepared, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.prepared[it.Code]; ok {
		return p, nil
	}
	s, err := schemas.For(it)
	if err != nil {
		return nil, err
	}
	id, err := d.reg.RegisterSchema(ctx, it.Subject(), sr.Schema{Schema: s.JSON, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return nil, fmt.Errorf("door: register the schema of %s: %w", it.Code, err)
	}
	p := &prepared{schema: s, id: id}
	d.prepared[it.Code] = p
	return p, nil
}

// Candidate is one record at the door: a decoded event (the gateway's), or
// the bytes of an inbox record, or a record already found bad (Bad set:
// the gateway's unparsable line, a client's refusal).
type Candidate struct {
	Department string // who sent it: the inbox's owner, the gateway's token
	Item       string
	Event      *schemas.Event
	Value      []byte // an inbox record's value
	Raw        []byte // the input as received, kept when refused
	Bad        *rules.Violation
	Refused    *quarantine.Record // a client's own refusal (inbox.KindRefused)
	Source     string             // where it was read (topic/partition/offset), for the quarantine
	// Corrects is the dispute the change corrects (inbox.HeaderCorrects).
	Corrects string
}

// Outcome is what the door did with a candidate.
type Outcome struct {
	Status    string // accepted, duplicate or rejected
	Position         // in the item's topic (accepted, duplicate), or in the quarantine (rejected)
	Violation *rules.Violation
}

// The outcomes.
const (
	Accepted  = "accepted"
	Duplicate = "duplicate"
	Rejected  = "rejected"
)

// verdict is the door's decision on one candidate, before it is produced.
type verdict struct {
	status string
	it     *catalog.Item
	ev     *schemas.Event
	// current says that ev is what decoding rec gives (read from an inbox
	// record of the item's current schema).
	current bool
	rec     *kgo.Record // to the item topic (accepted) or the quarantine (rejected)
	pos     Position    // duplicate: the original position
	v       *rules.Violation
	q       *quarantine.Record
}

// scratch is what the judging of one transaction's candidates shares: the
// ids accepted earlier in it, and the columns its records are read into.
type scratch struct {
	seen map[string]bool
	cols schemas.ColumnSet
}

func newScratch() *scratch {
	return &scratch{seen: map[string]bool{}, cols: schemas.ColumnSet{}}
}

// reset forgets the ids and empties the columns (the verdicts of the last
// transaction hold none of their vectors: envelopes and events are copies).
func (sc *scratch) reset() {
	clear(sc.seen)
	sc.cols.Reset()
}

// zeroMillis is the zero time.Time in Avro's milliseconds: an event time
// left unset, which the door sets to the publish time.
var zeroMillis = time.Time{}.UnixMilli()

// framedWith returns the Avro payload of a value framed with schema id
// (false for another id, or no framing).
func framedWith(value []byte, id int) ([]byte, bool) {
	got, payload, err := schemas.Unframe(value)
	return payload, err == nil && got == id
}

// isCurrent says whether an inbox value is framed with the schema id the
// door registered for the item (known once the door forwarded one of its
// records): its bytes are then read into columns.
func (d *Door) isCurrent(it *catalog.Item, value []byte) bool {
	d.mu.Lock()
	p := d.prepared[it.Code]
	d.mu.Unlock()
	if p == nil {
		return false
	}
	_, ok := framedWith(value, p.id)
	return ok
}

// readColumns reads an inbox record written with the item's current schema
// into columns, stamps it and checks it there (no map, no boxed value). It
// returns the event (the envelope, or whole when the pipelines are handed
// it), or the violation with what the record holds (nil when unreadable).
func (d *Door) readColumns(ctx context.Context, it *catalog.Item, c Candidate, now time.Time, sc *scratch) (*schemas.Event, *rules.Violation, error) {
	cols := sc.cols.Of(it)
	err := d.dec.DecodeColumns(ctx, cols, c.Value)
	var bad *schemas.RecordError
	if errors.As(err, &bad) {
		return nil, &rules.Violation{Item: it.Code, Rule: rules.SchemaDecode, Reason: bad.Error()}, nil
	}
	if err != nil {
		return nil, nil, err // the registry does not answer: retry
	}
	row := cols.N - 1
	// The door says who published, and when.
	cols.Department[row], cols.PublishTime[row] = c.Department, now.UnixMilli()
	if cols.EventTime[row] == zeroMillis {
		cols.EventTime[row] = cols.PublishTime[row]
	}
	if v := rules.CheckRow(it, c.Department, cols, row, now); v != nil {
		return cols.Event(row), v, nil
	}
	if d.cfg.Forwarded != nil {
		return cols.Event(row), nil, nil // handed to the pipelines whole
	}
	return cols.Envelope(row), nil, nil
}

// readEvent decodes an inbox record of any writer schema (ev nil), or takes
// the gateway's event, then stamps and checks it: the event, or the
// violation with it (nil when unreadable).
func (d *Door) readEvent(ctx context.Context, it *catalog.Item, c Candidate, now time.Time) (*schemas.Event, *rules.Violation, error) {
	ev := c.Event
	if ev == nil {
		var err error
		ev, err = d.dec.DecodeItem(ctx, it, c.Value)
		var bad *schemas.RecordError
		if errors.As(err, &bad) {
			return nil, &rules.Violation{Item: it.Code, Rule: rules.SchemaDecode, Reason: bad.Error()}, nil
		}
		if err != nil {
			return nil, nil, err // the registry does not answer: retry
		}
	}
	// The door says who published, and when.
	ev.Source.Department = c.Department
	ev.PublishTime = now.UTC().Truncate(time.Millisecond)
	if ev.EventTime.IsZero() {
		ev.EventTime = ev.PublishTime
	}
	return ev, rules.Check(it, c.Department, ev, now), nil
}

// judge decides on one candidate; sc holds the ids accepted earlier in the
// same transaction.
func (d *Door) judge(ctx context.Context, c Candidate, now time.Time, sc *scratch) (verdict, error) {
	reject := func(it *catalog.Item, ev *schemas.Event, v *rules.Violation) verdict {
		return d.rejectVerdict(c, it, ev, v, now)
	}
	if c.Item == "" && c.Event == nil && c.Refused == nil && c.Value != nil {
		// No jutong.item header: a standard Confluent serializer framed the
		// value with the item's schema id, which says the item.
		item, err := d.itemOf(ctx, c.Value)
		if err != nil {
			return verdict{}, err // the registry does not answer: retry
		}
		if item == "" {
			return reject(nil, c.Event, &rules.Violation{Rule: rules.ItemUnknown,
				Reason: "the record names no item: no jutong.item header, and its value is not framed with the schema id of an item's subject (<item>-value)"}), nil
		}
		c.Item = item
	}
	it := d.cfg.Catalog.Item(c.Item)
	if it == nil {
		return reject(nil, c.Event, &rules.Violation{Item: c.Item, Rule: rules.ItemUnknown, Reason: fmt.Sprintf("%q is no catalog item", c.Item)}), nil
	}
	if v := rules.Owner(it, c.Department); v != nil {
		return reject(it, c.Event, v), nil
	}
	if c.Refused != nil {
		return reject(it, c.Event, &rules.Violation{Item: it.Code, Key: c.Refused.Key, Field: c.Refused.Field, Rule: c.Refused.Rule, Reason: c.Refused.Reason}), nil
	}
	if c.Bad != nil {
		return reject(it, c.Event, c.Bad), nil
	}
	if c.Event == nil {
		if v := rules.Size(it, len(c.Value), "the record"); v != nil {
			return reject(it, nil, v), nil
		}
	}
	var ev *schemas.Event
	var v *rules.Violation
	var err error
	if c.Event == nil && d.isCurrent(it, c.Value) {
		ev, v, err = d.readColumns(ctx, it, c, now, sc)
	} else {
		ev, v, err = d.readEvent(ctx, it, c, now)
	}
	if err != nil {
		return verdict{}, err
	}
	if v != nil {
		return reject(it, ev, v), nil
	}
	if pos, dup := d.ids.lookup(it.Code, ev.ID, now); dup {
		return verdict{status: Duplicate, it: it, ev: ev, pos: pos}, nil
	}
	if sc.seen[idKey(it.Code, ev.ID)] {
		return verdict{status: Duplicate, it: it, ev: ev, pos: Position{-1, -1}}, nil
	}
	if ok, err := d.topics.exists(ctx, it.Topic()); err != nil {
		return verdict{}, err
	} else if !ok {
		return reject(it, ev, &rules.Violation{Item: it.Code, Key: ev.Key, Rule: rules.ItemNoTopic,
			Reason: fmt.Sprintf("the item's topic %s does not exist yet (jutong catalog apply creates it)", it.Topic())}), nil
	}
	p, err := d.prepare(ctx, it)
	if err != nil {
		return verdict{}, err
	}
	// A record written with the item's current schema is forwarded as it
	// came, with the stamped fields patched into its bytes; any other is
	// encoded again with the current schema.
	var payload []byte
	current := false
	if c.Event == nil {
		payload, current = framedWith(c.Value, p.id)
	}
	value := schemas.Frame(make([]byte, 0, len(c.Value)+16), p.id, nil)
	if current {
		value, err = p.schema.Restamp(value, payload, c.Department, ev.EventTime, ev.PublishTime)
	} else {
		value, err = p.schema.AppendEncode(value, ev)
	}
	if err != nil {
		return reject(it, ev, &rules.Violation{Item: it.Code, Key: ev.Key, Rule: rules.SchemaEncode, Reason: err.Error()}), nil
	}
	if v := rules.Size(it, len(value), "the record encoded"); v != nil {
		v.Key = ev.Key
		return reject(it, ev, v), nil
	}
	sc.seen[idKey(it.Code, ev.ID)] = true
	rec := &kgo.Record{Topic: it.Topic(), Key: []byte(ev.Key), Value: value}
	if d.cfg.Disputes != nil {
		if ids := d.cfg.Disputes(it.Code, ev.Key); len(ids) > 0 {
			rec.Headers = []kgo.RecordHeader{{Key: schemas.HeaderDisputes, Value: []byte(strings.Join(ids, ","))}}
		}
	}
	return verdict{status: Accepted, it: it, ev: ev, rec: rec, current: current}, nil
}

// rejectVerdict builds the quarantine record of a refused candidate, in the
// name of the department that sent it.
func (d *Door) rejectVerdict(c Candidate, it *catalog.Item, ev *schemas.Event, v *rules.Violation, now time.Time) verdict {
	code := c.Item
	if it != nil {
		code = it.Code
	}
	v.Item = code
	q := quarantine.Record{Item: code, Department: c.Department, Rule: v.Rule, Field: v.Field, Reason: v.Reason,
		RejectedAt: now.UTC().Truncate(time.Millisecond), Raw: string(c.Raw), Source: c.Source}
	if c.Refused != nil {
		r := *c.Refused
		r.Department, r.RejectedAt, r.Source, r.Item = c.Department, q.RejectedAt, c.Source, code
		if r.Rule != v.Rule || r.Field != v.Field {
			// The door's own verdict wins (a refusal sent for an item the
			// department does not own is a source.owner refusal); the
			// client's is kept in the reason.
			r.Rule, r.Field, r.Reason = v.Rule, v.Field, fmt.Sprintf("%s (the client had refused it: %s on %q: %s)", v.Reason, c.Refused.Rule, c.Refused.Field, c.Refused.Reason)
		}
		q = r
	}
	if ev != nil {
		q.Key, q.EventID, q.Op, q.EventTime, q.System, q.Adapter = ev.Key, ev.ID, string(ev.Op), ev.EventTime, ev.Source.System, ev.Source.Adapter
		if v.Key == "" {
			v.Key = ev.Key
		}
		if it != nil && ev.Data != nil {
			q.Record = schemas.PortableRecord(it, ev.Data)
		}
	}
	if c.Value != nil && c.Refused == nil {
		q.KeepPayload(c.Value)
	}
	if len(q.Raw) > quarantine.PayloadKeep {
		// An oversized line: keep its start and describe the whole.
		raw := []byte(q.Raw)
		q.Raw = ""
		q.KeepPayload(raw)
	}
	return verdict{status: Rejected, it: it, ev: ev, v: v, q: &q}
}

// maxQuarantineBytes bounds a quarantine record, well below Kafka's message
// limit.
const maxQuarantineBytes = 512 << 10

// quarantineRecords are the records of a refusal: the quarantine's, and the
// department's own copy.
func quarantineRecords(q *quarantine.Record) []*kgo.Record {
	b, _ := json.Marshal(q)
	if len(b) > maxQuarantineBytes {
		// As large as the record it refuses: keep the start of it, its size
		// and its hash, so that the refusal itself always fits in Kafka.
		small := *q
		small.Record, small.Raw = nil, ""
		if small.Payload == "" {
			small.KeepPayload(b)
		}
		b, _ = json.Marshal(&small)
	}
	key := []byte(q.Item + "/" + q.Key)
	hdr := []kgo.RecordHeader{
		{Key: inbox.HeaderItem, Value: []byte(q.Item)},
		{Key: "jutong.rule", Value: []byte(q.Rule)},
		{Key: "jutong.department", Value: []byte(q.Department)},
	}
	return []*kgo.Record{
		{Topic: topicname.Quarantine, Key: key, Value: b, Headers: hdr},
		{Topic: topicname.Rejects(q.Department), Key: key, Value: b, Headers: hdr},
	}
}

// metrics count what the door did.
type metrics struct {
	outcomes, quarantined *prometheus.CounterVec
	stage                 *prometheus.CounterVec // phase (promutil.StageSeconds)
}

func newMetrics(reg prometheus.Registerer) (_ *metrics, err error) {
	m := &metrics{outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jutong_door_records_total",
		Help: "Records the door judged, by item, department, path (inbox or gateway), outcome (accepted, duplicate, rejected) and, for a refusal, the rule.",
	}, []string{"item", "department", "path", "outcome", "rule"}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_quarantined_events_total",
			Help: "Records refused at the door and kept in the quarantine topic, whoever published them (SDK, gateway, adapters), by item, department and rule."},
			[]string{"item", "department", "rule"}), stage: promutil.StageSeconds()}
	if reg != nil {
		m.stage = promutil.Register(reg, m.stage, &err)
		m.outcomes = promutil.Register(reg, m.outcomes, &err)
		m.quarantined = promutil.Register(reg, m.quarantined, &err)
	}
	return m, err
}
