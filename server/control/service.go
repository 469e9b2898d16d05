package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/server/audit"
)

// Topic holds the control state: one record per application, compacted.
const Topic = topicname.Control

// Config configures a Service.
type Config struct {
	Catalog *catalog.Catalog
	Kafka   []kgo.Opt
	Audit   *audit.Writer
	// Published says whether an item has any record yet (an unpublished
	// item gives its source 10 working days instead of 5).
	Published func(ctx context.Context, item string) (bool, error)
	// OnGrants receives the active grants after every change of them, and
	// once at Open (to reconcile ACLs and feeds with the control state).
	OnGrants func(ctx context.Context, grants []Grant) error
	// Now is the clock (default time.Now).
	Now func() time.Time
	Log *slog.Logger
}

// Service keeps the applications and grants. One instance writes at a time
// (the control API of one `jutong serve`); others may read the topic.
type Service struct {
	cfg  Config
	cal  *Calendar
	cl   *kgo.Client
	mu   sync.Mutex
	apps map[string]*Application
}

// Validate says what is wrong with the configuration (after its defaults).
func (cfg Config) Validate() error {
	if cfg.Catalog == nil || len(cfg.Kafka) == 0 {
		return errors.New("control: a catalog and Kafka options are required")
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
	if cfg.Published == nil {
		cfg.Published = func(context.Context, string) (bool, error) { return true, nil }
	}
}

// Open loads the control state from its topic and applies the grants.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cal, err := NewCalendar(cfg.Catalog.Calendar)
	if err != nil {
		return nil, err
	}
	cl, err := kafkaconn.NewClient(cfg.Kafka, kgo.DefaultProduceTopic(Topic))
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s := &Service{cfg: cfg, cal: cal, cl: cl, apps: map[string]*Application{}}
	if err := s.load(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	if err := s.publishGrants(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the service's Kafka client.
func (s *Service) Close() { s.cl.Close() }

// Calendar is the working-day calendar deadlines count in.
func (s *Service) Calendar() *Calendar { return s.cal }

func (s *Service) load(ctx context.Context) error {
	err := kafkaconn.ReadAll(ctx, s.cfg.Kafka, Topic, func(r *kgo.Record) {
		if r.Value == nil {
			delete(s.apps, string(r.Key))
			return
		}
		var a Application
		if err := json.Unmarshal(r.Value, &a); err != nil {
			s.cfg.Log.Warn("control: bad record", "offset", r.Offset, "err", err)
			return
		}
		s.apps[a.ID] = &a
	})
	if err != nil {
		return fmt.Errorf("control: load: %w", err)
	}
	s.cfg.Log.Info("control state loaded", "applications", len(s.apps))
	return nil
}

// save writes an application to the topic.
func (s *Service) save(ctx context.Context, a *Application) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Key: []byte(a.ID), Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("control: save %s: %w", a.ID, err)
	}
	return nil
}

func (s *Service) audit(ctx context.Context, evs ...audit.Event) {
	if s.cfg.Audit == nil {
		return
	}
	if err := s.cfg.Audit.Write(ctx, evs...); err != nil {
		s.cfg.Log.Error("audit write failed", "err", err)
	}
}

func event(kind string, a *Application, actor, detail string, now time.Time) audit.Event {
	e := audit.Event{Time: now.UTC(), Kind: kind, Department: a.Department, Item: a.Item, Application: a.ID, Actor: actor, Detail: detail}
	if a.Grant != nil {
		e.Grant = a.Grant.ID
	}
	return e
}

// Apply submits a department's application.
func (s *Service) Apply(ctx context.Context, dept string, r Request) (*Application, error) {
	now := s.cfg.Now()
	a, err := newApplication(s.cfg.Catalog, s.cal, dept, r, now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.save(ctx, a); err != nil {
		return nil, err
	}
	s.apps[a.ID] = a
	evs := []audit.Event{event(audit.Applied, a, dept, a.Purpose, now)}
	if a.State == Refused {
		evs = append(evs, event(audit.Refused, a, s.cfg.Catalog.Authority, a.Reason, now))
	}
	s.audit(ctx, evs...)
	return clone(a), nil
}

// Decide records a reviewer's verdict on an application.
func (s *Service) Decide(ctx context.Context, id, by string, v Verdict) (*Application, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[id]
	if !ok {
		return nil, fmt.Errorf("control: %w: application %s", ErrNotFound, id)
	}
	published, err := s.cfg.Published(ctx, a.Item)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	next := clone(a)
	if err := next.decide(s.cfg.Catalog, s.cal, by, v, published, now); err != nil {
		return nil, err
	}
	if err := s.save(ctx, next); err != nil {
		return nil, err
	}
	s.apps[id] = next
	kind := audit.Decided
	switch next.State {
	case Granted:
		kind = audit.Granted
	case Refused:
		kind = audit.Refused
	}
	s.audit(ctx, event(kind, next, by, v.Reason, now))
	if next.State == Granted {
		if err := s.publishGrants(ctx); err != nil {
			return clone(next), err
		}
	}
	return clone(next), nil
}

// Revoke ends a grant.
func (s *Service) Revoke(ctx context.Context, id, by, reason string) (*Application, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[id]
	if !ok {
		return nil, fmt.Errorf("control: %w: application %s", ErrNotFound, id)
	}
	now := s.cfg.Now()
	next := clone(a)
	if err := next.revoke(s.cfg.Catalog, by, reason, now); err != nil {
		return nil, err
	}
	if err := s.save(ctx, next); err != nil {
		return nil, err
	}
	s.apps[id] = next
	s.audit(ctx, event(audit.Revoked, next, by, reason, now))
	return clone(next), s.publishGrants(ctx)
}

// ErrNotFound is returned (wrapped) for an unknown application.
var ErrNotFound = errors.New("not found")

// Tick expires grants past their end and escalates overdue reviews; Run
// calls it periodically.
func (s *Service) Tick(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	changedGrants := false
	for id, a := range s.apps {
		next := clone(a)
		expired, escalated := next.tick(now)
		if !expired && !escalated {
			continue
		}
		if err := s.save(ctx, next); err != nil {
			return err
		}
		s.apps[id] = next
		if expired {
			changedGrants = true
			s.audit(ctx, event(audit.Expired, next, "jutong", next.Reason, now))
		}
		if escalated {
			who := s.cfg.Catalog.Authority
			if next.State == SourceReview {
				who = s.cfg.Catalog.Item(next.Item).Source
			}
			s.cfg.Log.Warn("application overdue: escalated", "application", id, "state", next.State, "waiting_on", who, "due", next.Due)
			s.audit(ctx, event(audit.Escalated, next, "jutong", fmt.Sprintf("%s overdue since %s, waiting on %s", next.State, next.Due.Format(time.RFC3339), who), now))
		}
	}
	if changedGrants {
		return s.publishGrants(ctx)
	}
	return nil
}

// Run ticks every interval until ctx is done.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Log.Error("control tick failed", "err", err)
			}
		}
	}
}

// publishGrants hands the active grants to OnGrants (s.mu held).
func (s *Service) publishGrants(ctx context.Context) error {
	if s.cfg.OnGrants == nil {
		return nil
	}
	return s.cfg.OnGrants(ctx, s.grantsLocked(s.cfg.Now()))
}

// Grants lists the grants active now.
func (s *Service) Grants() []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grantsLocked(s.cfg.Now())
}

// GrantsOn returns a department's active grants on an item (with their
// purposes, which grants approved before purposes were kept get from their
// application).
func (s *Service) GrantsOn(dept, item string) []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	var out []Grant
	for _, a := range s.apps {
		if a.Department == dept && a.Item == item && a.State == Granted && a.Grant != nil && a.Grant.Active(now) {
			g := *a.Grant
			if g.Purpose == "" {
				g.Purpose = a.Purpose
			}
			out = append(out, g)
		}
	}
	return out
}

func (s *Service) grantsLocked(now time.Time) []Grant {
	var out []Grant
	for _, a := range s.apps {
		if a.State == Granted && a.Grant != nil && a.Grant.Active(now) {
			out = append(out, *a.Grant)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get returns one application.
func (s *Service) Get(id string) (*Application, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[id]
	return clone(a), ok
}

// Filter selects applications; zero fields match anything.
type Filter struct {
	Department string // the applicant
	Source     string // the item's source department
	Item       string
	State      State
	Overdue    bool
}

// List returns the applications that match, oldest first.
func (s *Service) List(f Filter) []*Application {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	var out []*Application
	for _, a := range s.apps {
		switch {
		case f.Department != "" && a.Department != f.Department,
			f.Source != "" && s.cfg.Catalog.Item(a.Item).Source != f.Source,
			f.Item != "" && a.Item != f.Item,
			f.State != "" && a.State != f.State,
			f.Overdue && !a.Overdue(now):
			continue
		}
		out = append(out, clone(a))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Submitted.Before(out[j].Submitted) })
	return out
}

func clone(a *Application) *Application {
	if a == nil {
		return nil
	}
	c := *a
	c.Fields = slices.Clone(a.Fields)
	c.Decisions = slices.Clone(a.Decisions)
	if a.Grant != nil {
		g := *a.Grant
		g.Fields = slices.Clone(a.Grant.Fields)
		c.Grant = &g
	}
	return &c
}

// Duty is one line of the responsibility list (责任清单): an item a
// department must publish, and how often.
type Duty struct {
	Department string `json:"department"`
	Item       string `json:"item"`
	Name       string `json:"name"`
	Frequency  string `json:"update_frequency"`
	Base       string `json:"base,omitempty"`
}

// Responsibilities derives the responsibility list from the catalog, by
// department then item.
func Responsibilities(cat *catalog.Catalog) []Duty {
	var out []Duty
	for _, it := range cat.Items {
		out = append(out, Duty{Department: it.Source, Item: it.Code, Name: it.Name, Frequency: string(it.UpdateFrequency), Base: it.Base})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Department != out[j].Department {
			return out[i].Department < out[j].Department
		}
		return out[i].Item < out[j].Item
	})
	return out
}
