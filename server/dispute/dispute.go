package dispute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/control"
)

// Topic holds the disputes, one record each (compacted).
const Topic = topicname.Disputes

// State is where a dispute stands.
type State string

// The states of a dispute.
const (
	Pending    State = "open"       // waiting on the source
	Correcting State = "correcting" // the source named its correcting change: waiting for every sink to land it
	Corrected  State = "corrected"  // the correction landed everywhere (the receipts say where and when)
	Rejected   State = "rejected"   // the source said why the record stands
)

// Request is what a department disputes.
type Request struct {
	Item string `json:"item"`
	Key  string `json:"key"`
	// Fields are the fields thought wrong; Claim what the department
	// believes is right and why; Evidence its supporting text.
	Fields   []string `json:"fields"`
	Claim    string   `json:"claim"`
	Evidence string   `json:"evidence,omitempty"`
}

// Dispute is one dispute of one record.
type Dispute struct {
	ID string `json:"id"`
	Request
	RaisedBy string    `json:"raised_by"`
	Joined   []string  `json:"joined,omitempty"` // departments that raised the same since
	Source   string    `json:"source"`
	Raised   time.Time `json:"raised"`
	Due      time.Time `json:"due"`
	// Escalated is set once, when the deadline passed with no answer.
	Escalated bool  `json:"escalated,omitempty"`
	State     State `json:"state"`
	// Reason is why the source rejected it; Correction the event id of
	// the change that corrected the record.
	Reason     string    `json:"reason,omitempty"`
	Correction string    `json:"correction,omitempty"`
	Corrected  time.Time `json:"corrected,omitzero"` // when the source named it
	// Receipts say, per sink holding the item, where and when the
	// correction landed; the dispute closes when every one has.
	Receipts []Receipt `json:"receipts,omitempty"`
	// Unlanded is set once, when the correction had not landed everywhere
	// within Config.LandWithin.
	Unlanded bool      `json:"unlanded,omitempty"`
	Closed   time.Time `json:"closed,omitzero"`
	// InTime says whether it was answered by its deadline.
	InTime bool `json:"in_time,omitempty"`
	// FlagShown says that the record's flag shows whether this dispute is
	// open: in PostgreSQL's flag table and by a flag record on the item's
	// flags topic and its feeds' (schemas.Flag). Cleared at every save that
	// opens or closes it; the service shows it (again, after a crash) until
	// it is set.
	FlagShown bool `json:"flag_shown,omitempty"`
	// Scheme is how its flag is shown (FlagScheme; 0: by a release that
	// wrote flag records onto the item's topic).
	Scheme int `json:"flag_scheme,omitempty"`
}

// Receipt is where and when one sink landed a correction.
type Receipt struct {
	Sink  string `json:"sink"` // postgres, clickhouse, ...
	Topic string `json:"topic"`
	// Key is the key of the record the change landed as, when the sink
	// says: a correction of another record is refused.
	Key       string    `json:"-"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Landed    time.Time `json:"landed"`
}

// Landing tells where a change has landed: the receipts of the sinks that
// hold it, and the sinks that should and have not yet.
type Landing func(ctx context.Context, item, eventID string) (receipts []Receipt, waiting []string, err error)

// Involves says whether dept raised or joined the dispute.
func (d *Dispute) Involves(dept string) bool {
	return d.RaisedBy == dept || slices.Contains(d.Joined, dept)
}

// Config configures a Service.
type Config struct {
	Catalog *catalog.Catalog
	Kafka   []kgo.Opt
	Audit   *audit.Writer
	// MayRead says whether a department reads the item (an active grant):
	// only those may dispute its records or see their disputes.
	MayRead func(dept, item string) bool
	// Delivers, when set, says whether one of dept's grants on item
	// delivers the field in clear: only such fields may be disputed.
	Delivers func(dept, item, field string) bool
	// DB, when set, is the PostgreSQL database of the base and theme
	// databases: open disputes are flagged there.
	DB *pgxpool.Pool
	// Landing, when set, makes a correction close the dispute only once
	// every sink has landed it (checked at every Tick); LandWithin is how
	// long that may take before it is flagged and logged (default 10
	// minutes). Without it a correction closes the dispute at once.
	Landing    Landing
	LandWithin time.Duration
	// Registry reaches the schema registry as the bus: the flag schema is
	// registered under every flags topic's subject.
	Registry []sr.ClientOpt
	// Feeds lists the flags topics of an item's running feeds: a record's
	// flag is written to each, as well as to the item's own.
	Feeds func(item string) []FlagTopic
	// Change, when set, says which record a change is of (the door's index
	// of the changes it accepted): a correction naming a change of another
	// record is refused. found is false for an event id it does not know.
	Change func(ctx context.Context, item, eventID string) (key string, found bool, err error)
	Now    func() time.Time
	Log    *slog.Logger
}

// Service keeps the disputes.
type Service struct {
	cfg     Config
	cal     *control.Calendar
	cl      *kgo.Client
	mu      sync.RWMutex
	all     map[string]*Dispute
	open    map[record][]string // flagged records -> their disputes' ids
	unshown map[string]bool     // disputes whose flag is not shown yet (FlagShown false)
	// showMu orders the flag records: each says what was open when it
	// was written, and a later one is written later.
	showMu sync.Mutex
	reg    *sr.Client
	idsMu  sync.Mutex
	// flagIDs are the flag schema's ids, by flags topic.
	flagIDs map[string]int
}

// Errors, wrapped with what happened.
var (
	ErrForbidden = control.ErrForbidden
	ErrNotFound  = errors.New("not found")
	ErrState     = errors.New("not in that state")
)

// RequestError names the field a request got wrong.
type RequestError = control.RequestError

// Validate says what is wrong with the configuration (after its defaults).
func (cfg Config) Validate() error {
	if cfg.Catalog == nil || cfg.MayRead == nil || len(cfg.Kafka) == 0 {
		return errors.New("dispute: Catalog, Kafka and MayRead are required")
	}
	return nil
}

// defaults fills in what is not set.
func (cfg *Config) defaults() {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.LandWithin <= 0 {
		cfg.LandWithin = 10 * time.Minute
	}
}

// Open loads the disputes and makes the flag table.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cal, err := control.NewCalendar(cfg.Catalog.Calendar)
	if err != nil {
		return nil, err
	}
	if cfg.DB != nil {
		if _, err := cfg.DB.Exec(ctx, pgsink.DisputesDDL); err != nil {
			return nil, fmt.Errorf("dispute: the flag table: %w", err)
		}
	}
	var reg *sr.Client
	if cfg.Registry != nil {
		if reg, err = sr.NewClient(cfg.Registry...); err != nil {
			return nil, err
		}
	}
	cl, err := kafkaconn.NewClient(cfg.Kafka, kgo.DefaultProduceTopic(Topic))
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, cal: cal, cl: cl, reg: reg, flagIDs: map[string]int{}, all: map[string]*Dispute{}, open: map[record][]string{}, unshown: map[string]bool{}}
	if err := kafkaconn.ReadAll(ctx, cfg.Kafka, Topic, func(r *kgo.Record) {
		var d Dispute
		if err := json.Unmarshal(r.Value, &d); err != nil {
			cfg.Log.Warn("dispute: unreadable record in the disputes topic, skipped", "offset", r.Offset, "err", err)
			return
		}
		s.put(&d)
	}); err != nil {
		cl.Close()
		return nil, fmt.Errorf("dispute: load: %w", err)
	}
	if err := s.upgradeLegacy(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the service's Kafka client.
func (s *Service) Close() { s.cl.Close() }

// Raise records dept's dispute of a record, or joins the open one of the
// same record and field.
func (s *Service) Raise(ctx context.Context, dept string, r Request) (*Dispute, error) {
	it := s.cfg.Catalog.Item(r.Item)
	switch {
	case it == nil:
		return nil, &RequestError{Field: "item", Reason: fmt.Sprintf("unknown catalog item %q", r.Item)}
	case strings.TrimSpace(r.Key) == "":
		return nil, &RequestError{Field: "key", Reason: "required: the key of the disputed record"}
	case len(r.Fields) == 0:
		return nil, &RequestError{Field: "fields", Reason: "required: the fields thought wrong"}
	case strings.TrimSpace(r.Claim) == "":
		return nil, &RequestError{Field: "claim", Reason: "required: what is right, and why"}
	case it.Source == dept:
		return nil, &RequestError{Field: "item", Reason: dept + " is the source of " + it.Code + ": correct the record instead"}
	case !s.cfg.MayRead(dept, it.Code):
		return nil, fmt.Errorf("%w: %s has no active grant on %s: only a department that reads an item disputes its records", ErrForbidden, dept, it.Code)
	}
	for _, f := range r.Fields {
		if it.Field(f) == nil {
			return nil, &RequestError{Field: "fields", Reason: fmt.Sprintf("%s has no field %q", it.Code, f)}
		}
		if s.cfg.Delivers != nil && !s.cfg.Delivers(dept, it.Code, f) {
			return nil, fmt.Errorf("%w: fields: %s's grant on %s does not deliver %s in clear (not granted, or above its grade): a dispute names only fields the department sees", ErrForbidden, dept, it.Code, f)
		}
	}
	d, fresh, err := s.raise(ctx, dept, it, r)
	if err == nil && fresh {
		s.show(ctx)
	}
	return d, err
}

// raise records a new dispute (fresh) or joins the open one of the same
// record and field.
func (s *Service) raise(ctx context.Context, dept string, it *catalog.Item, r Request) (*Dispute, bool, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.open[openKey(r.Item, r.Key)] {
		if d := s.all[id]; d.State == Pending && overlaps(d.Fields, r.Fields) {
			if d.Involves(dept) {
				return clone(d), false, nil
			}
			next := clone(d)
			next.Joined = append(next.Joined, dept)
			if err := s.save(ctx, next); err != nil {
				return nil, false, err
			}
			s.audit(ctx, next, "dispute_joined", dept, r.Claim, now)
			return clone(next), false, nil
		}
	}
	d := &Dispute{ID: newID(), Request: r, RaisedBy: dept, Source: it.Source, Raised: now.UTC(),
		Due: s.cal.Deadline(now, it.DisputeDeadline()).UTC(), State: Pending, Scheme: FlagScheme}
	if err := s.save(ctx, d); err != nil {
		return nil, false, err
	}
	s.audit(ctx, d, "dispute_raised", dept, r.Claim, now)
	return clone(d), true, nil
}

// Reject closes a dispute the source finds groundless, with the reason.
func (s *Service) Reject(ctx context.Context, id, by, reason string) (*Dispute, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, &RequestError{Field: "reason", Reason: "a rejection must say why the record stands"}
	}
	return s.close(ctx, id, by, func(d *Dispute) { d.State, d.Reason = Rejected, reason }, "dispute_rejected", reason)
}

// Correct records the change (event id eventID, published through the door
// as usual) with which the source corrected the disputed record. The
// dispute closes when every sink has landed it (Tick); it stays flagged
// until then.
func (s *Service) Correct(ctx context.Context, id, by, eventID string) (*Dispute, error) {
	if strings.TrimSpace(eventID) == "" {
		return nil, &RequestError{Field: "event_id", Reason: "required: the event id of the correcting change"}
	}
	if err := s.checkChange(ctx, id, by, eventID); err != nil {
		return nil, err
	}
	if s.cfg.Landing == nil {
		return s.close(ctx, id, by, func(d *Dispute) { d.State, d.Correction, d.Corrected = Corrected, eventID, s.cfg.Now().UTC() }, "dispute_corrected", eventID)
	}
	d, err := s.answer(ctx, id, by, func(d *Dispute) { d.State, d.Correction, d.Corrected = Correcting, eventID, s.cfg.Now().UTC() }, "dispute_correcting", eventID, false)
	if err != nil {
		return nil, err
	}
	if err := s.land(ctx); err != nil {
		s.cfg.Log.Warn("dispute: receipts not read yet", "dispute", id, "err", err)
	}
	got, err := s.Get(by, d.ID)
	if err == nil && got.State == Pending { // landed already, as a change of another record
		return nil, wrongRecord(got, eventID)
	}
	return got, err
}

// checkChange refuses a correction that names a change of another record
// than the disputed one, when the door knows the change.
func (s *Service) checkChange(ctx context.Context, id, by, eventID string) error {
	s.mu.RLock()
	d, ok := s.all[id]
	s.mu.RUnlock()
	if !ok || s.cfg.Change == nil || by != d.Source {
		return nil // answerLocked says what is wrong
	}
	key, found, err := s.cfg.Change(ctx, d.Item, eventID)
	switch {
	case err != nil:
		return fmt.Errorf("dispute: which record change %s is of: %w", eventID, err)
	case found && key != d.Key:
		return wrongRecord(d, eventID)
	}
	return nil
}

func wrongRecord(d *Dispute, eventID string) error {
	return &RequestError{Field: "event_id", Reason: fmt.Sprintf("change %s is not of the disputed record (%s key %s): a dispute is corrected by a change of its own record", eventID, d.Item, d.Key)}
}

// CorrectRecord is Correct for a change that names the dispute itself: the
// change must be of the disputed record (item and key).
func (s *Service) CorrectRecord(ctx context.Context, id, by, item, key, eventID string) (*Dispute, error) {
	s.mu.Lock()
	d, ok := s.all[id]
	s.mu.Unlock()
	if ok && (d.Item != item || d.Key != key) {
		return nil, &RequestError{Field: "corrects", Reason: fmt.Sprintf("dispute %s is about %s %s, not %s %s", id, d.Item, d.Key, item, key)}
	}
	return s.Correct(ctx, id, by, eventID)
}

func (s *Service) close(ctx context.Context, id, by string, set func(*Dispute), kind, detail string) (*Dispute, error) {
	return s.answer(ctx, id, by, set, kind, detail, true)
}

// answer applies the source's answer to an open dispute; closing, it
// clears the flag.
func (s *Service) answer(ctx context.Context, id, by string, set func(*Dispute), kind, detail string, closing bool) (*Dispute, error) {
	d, err := s.answerLocked(ctx, id, by, set, kind, detail, closing)
	if err == nil && closing {
		s.show(ctx)
	}
	return d, err
}

func (s *Service) answerLocked(ctx context.Context, id, by string, set func(*Dispute), kind, detail string, closing bool) (*Dispute, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.all[id]
	switch {
	case !ok:
		return nil, fmt.Errorf("dispute: %w: %s", ErrNotFound, id)
	case by != d.Source:
		return nil, fmt.Errorf("%w: %s answers disputes of %s, not %s", ErrForbidden, d.Source, d.Item, by)
	case d.State != Pending:
		return nil, fmt.Errorf("dispute: %w: %s is %s", ErrState, id, d.State)
	}
	next := clone(d)
	set(next)
	if closing {
		next.Closed, next.InTime = now.UTC(), !now.After(d.Due)
	}
	if err := s.save(ctx, next); err != nil {
		return nil, err
	}
	s.audit(ctx, next, kind, by, detail, now)
	return clone(next), nil
}

// Land reads the receipts of the corrections in flight and closes the
// disputes whose correction landed everywhere (Tick does it too); with no
// correction in flight it does nothing.
func (s *Service) Land(ctx context.Context) error { return s.land(ctx) }

// land reads the receipts of the corrections in flight and closes the
// disputes whose correction landed everywhere.
func (s *Service) land(ctx context.Context) error {
	if s.cfg.Landing == nil {
		return nil
	}
	s.mu.Lock()
	var pending []*Dispute
	for _, d := range s.all {
		if d.State == Correcting {
			pending = append(pending, clone(d))
		}
	}
	s.mu.Unlock()
	for _, d := range pending {
		receipts, waiting, err := s.cfg.Landing(ctx, d.Item, d.Correction)
		if err != nil {
			return err
		}
		now := s.cfg.Now()
		if other := otherRecord(receipts, d.Key); other != "" {
			s.refuseCorrection(ctx, d, now)
			continue
		}
		s.mu.Lock()
		cur := s.all[d.ID]
		if cur == nil || cur.State != Correcting || cur.Correction != d.Correction {
			s.mu.Unlock() // closed meanwhile by a concurrent land (the tick and a caller's): once only
			continue
		}
		next := clone(cur)
		next.Receipts = receipts
		switch {
		case len(waiting) == 0: // every sink holding the item has it (a bus without sinks: at once)
			next.State, next.Closed = Corrected, now.UTC()
			// In time: the source named its correction by the deadline.
			next.InTime = !d.Corrected.After(d.Due)
		case !next.Unlanded && now.Sub(d.Corrected) > s.cfg.LandWithin:
			next.Unlanded = true
			s.cfg.Log.Warn("dispute: the correction has not landed everywhere", "dispute", d.ID, "event", d.Correction, "waiting", waiting)
			s.audit(ctx, next, "dispute_unlanded", "jutong", "waiting on "+strings.Join(waiting, ", "), now)
		default:
			s.mu.Unlock()
			continue
		}
		err = s.save(ctx, next)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if next.State == Corrected {
			s.audit(ctx, next, "dispute_corrected", d.Source, d.Correction+" landed in "+sinks(receipts), now)
			s.show(ctx)
		}
	}
	return nil
}

// otherRecord is the key of another record than key that a receipt says
// the change landed as ("" when none does).
func otherRecord(rs []Receipt, key string) string {
	for _, r := range rs {
		if r.Key != "" && r.Key != key {
			return r.Key
		}
	}
	return ""
}

// refuseCorrection reopens a dispute whose correction turned out, once
// landed, to be a change of another record: it waits on the source again.
func (s *Service) refuseCorrection(ctx context.Context, d *Dispute, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.all[d.ID]
	if !ok || cur.State != Correcting || cur.Correction != d.Correction {
		return
	}
	next := clone(cur)
	next.State, next.Correction, next.Corrected, next.Receipts = Pending, "", time.Time{}, nil
	if err := s.save(ctx, next); err != nil {
		s.cfg.Log.Warn("dispute: cannot reopen a dispute corrected by a change of another record", "dispute", d.ID, "err", err)
		return
	}
	s.cfg.Log.Warn("dispute: the correction is a change of another record: refused, the dispute is open again", "dispute", d.ID, "event", d.Correction)
	s.audit(ctx, next, "dispute_correction_refused", "jutong", wrongRecord(d, d.Correction).Error(), now)
}

func sinks(rs []Receipt) string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s at %s/%d@%d", r.Sink, r.Topic, r.Partition, r.Offset))
	}
	return strings.Join(out, ", ")
}

// Tick closes the disputes whose correction landed everywhere, and
// escalates, once, the open disputes past their deadline.
func (s *Service) Tick(ctx context.Context) error {
	s.show(ctx) // what a failure or a crash left unshown
	if err := s.land(ctx); err != nil {
		return err
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.all {
		if d.State != Pending || d.Escalated || !now.After(d.Due) {
			continue
		}
		next := clone(d)
		next.Escalated = true
		if err := s.save(ctx, next); err != nil {
			return err
		}
		s.cfg.Log.Warn("dispute overdue: escalated to the data authority", "dispute", d.ID, "item", d.Item, "source", d.Source, "due", d.Due)
		s.audit(ctx, next, "dispute_escalated", "jutong", "overdue since "+d.Due.Format(time.RFC3339), now)
	}
	return nil
}

// Get returns a dispute dept may see.
func (s *Service) Get(dept, id string) (*Dispute, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.all[id]
	if !ok || !s.visible(d, dept) {
		return nil, fmt.Errorf("dispute: %w: %s", ErrNotFound, id)
	}
	return clone(d), nil
}

// List returns the disputes dept may see: those it raised or joined, those
// of its items, all for the data authority; each only while dept reads
// the item or is its source.
func (s *Service) List(dept string) []*Dispute {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Dispute
	for _, d := range s.all {
		if s.visible(d, dept) {
			out = append(out, clone(d))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Raised.Before(out[j].Raised) })
	return out
}

func (s *Service) visible(d *Dispute, dept string) bool {
	switch {
	case dept == s.cfg.Catalog.Authority, dept == d.Source:
		return true
	case d.Involves(dept):
		return s.cfg.MayRead(dept, d.Item)
	}
	return false
}

// OpenOn returns the open disputes of a record (for the lookups).
func (s *Service) OpenOn(item, key string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.open[openKey(item, key)])
}

// record names a record: an item and a key (no allocation to look one up:
// the door and the feeds ask for every record they pass).
type record struct{ item, key string }

func openKey(item, key string) record { return record{item, key} }

// flagged says whether a dispute in state st keeps its record flagged.
func flagged(st State) bool { return st == Pending || st == Correcting }

// put keeps a dispute and the index of the flagged records (the feeds and
// the lookups ask it for every record).
func (s *Service) put(d *Dispute) {
	k := openKey(d.Item, d.Key)
	if prev, ok := s.all[d.ID]; ok && flagged(prev.State) {
		s.open[k] = slices.DeleteFunc(s.open[k], func(id string) bool { return id == d.ID })
	}
	if flagged(d.State) {
		s.open[k] = append(s.open[k], d.ID)
		slices.Sort(s.open[k])
	}
	if len(s.open[k]) == 0 {
		delete(s.open, k)
	}
	if d.FlagShown {
		delete(s.unshown, d.ID)
	} else {
		s.unshown[d.ID] = true
	}
	s.all[d.ID] = d
}

// save writes a dispute to its topic and keeps it; one that opens or closes
// is to be shown (show).
func (s *Service) save(ctx context.Context, d *Dispute) error {
	if prev, ok := s.all[d.ID]; !ok || flagged(prev.State) != flagged(d.State) {
		d.FlagShown = false
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Key: []byte(d.ID), Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("dispute: save %s: %w", d.ID, err)
	}
	s.put(d)
	return nil
}

func (s *Service) audit(ctx context.Context, d *Dispute, kind, actor, detail string, now time.Time) {
	if s.cfg.Audit == nil {
		return
	}
	if err := s.cfg.Audit.Write(ctx, audit.Event{Time: now.UTC(), Kind: kind, Department: d.RaisedBy, Item: d.Item, Application: d.ID,
		Actor: actor, Detail: detail, Keys: []string{d.Key}}); err != nil {
		s.cfg.Log.Error("dispute: audit write failed", "err", err)
	}
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func clone(d *Dispute) *Dispute {
	c := *d
	c.Fields = slices.Clone(d.Fields)
	c.Joined = slices.Clone(d.Joined)
	return &c
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "dsp-" + hex.EncodeToString(b[:])
}
