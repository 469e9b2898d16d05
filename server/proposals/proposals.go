// Package proposals is the catalog as a governed workflow (docs/catalog.md,
// "Proposals"): a department proposes a new item or a change to one of its
// own; the proposal is checked at once (the catalog's rules, evolution
// compatibility with the current version, grades, the renaming of fields);
// the data authority approves it, asks for changes or refuses it with a
// reason, within a working-day deadline; an approved proposal becomes the
// item's next version, which the bus applies (its topic and schema at once;
// Config.Apply). Every version of every item is kept, with who proposed and
// who approved it, and two versions are diffable. State: the compacted
// topic _jutong.proposals (proposals, versions), read back at start.
package proposals

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

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/duplicates"
	"github.com/jutong/jutong/server/registry"
)

// Topic holds the proposals and the items' versions (compacted).
const Topic = topicname.Proposals

// ReviewDays is the authority's deadline for a proposal, in working days.
const ReviewDays = 10

// The states of a proposal.
const (
	Pending          = "pending"           // waiting on the data authority
	ChangesRequested = "changes_requested" // the authority asked for changes: the department proposes again
	Approved         = "approved"          // the item's next version
	Refused          = "refused"
)

// Proposal is one department's proposal of an item's version.
type Proposal struct {
	ID         string        `json:"id"`
	Department string        `json:"department"`
	Item       *catalog.Item `json:"item"`
	// Base is the version the proposal changes (0: a new item).
	Base     int       `json:"base"`
	Reason   string    `json:"reason"`
	State    string    `json:"state"`
	Proposed time.Time `json:"proposed"`
	Due      time.Time `json:"due"`
	// Changes are what the proposal changes, as Diff says.
	Changes []string `json:"changes"`
	// Duplicates are the fields of the proposed item that other items
	// already collect about the same subjects, by the catalog's evidence
	// (package duplicates), best first: for the authority's review.
	Duplicates []duplicates.Candidate `json:"duplicates,omitempty"`
	// DecidedBy, Decided and Verdict are the authority's answer.
	DecidedBy string    `json:"decided_by,omitempty"`
	Decided   time.Time `json:"decided,omitzero"`
	Verdict   string    `json:"verdict,omitempty"`
	Version   int       `json:"version,omitempty"` // when approved
	// Escalated is set once, when the deadline passed with the proposal
	// still pending (Tick): the authority's own review is late.
	Escalated bool `json:"escalated,omitempty"`
	// ApplyError is why applying the approved version failed (it is kept,
	// and applied at the next start).
	ApplyError string `json:"apply_error,omitempty"`
}

// Version is one version of one item.
type Version struct {
	Item       string        `json:"item"`
	Version    int           `json:"version"`
	Def        *catalog.Item `json:"def"`
	Proposal   string        `json:"proposal,omitempty"` // empty: the catalog's files (version 1)
	ProposedBy string        `json:"proposed_by,omitempty"`
	ApprovedBy string        `json:"approved_by,omitempty"`
	At         time.Time     `json:"at"`
}

// Config is what the service needs.
type Config struct {
	Catalog *catalog.Catalog // the catalog's files (the first version of each item)
	Kafka   []kgo.Opt        // the bus's admin
	// Apply applies an approved version (the new catalog, the item) to the
	// running bus; nil: nothing is applied (tests of the workflow alone).
	Apply func(ctx context.Context, cat *catalog.Catalog, it *catalog.Item) error
	// Now is the clock (tests).
	Now func() time.Time
	Log *slog.Logger
}

// Service keeps the proposals and versions.
type Service struct {
	cfg       Config
	cal       *control.Calendar
	cl        *kgo.Client
	mu        sync.Mutex
	cat       *catalog.Catalog // the current catalog: the files with every approved version
	proposals map[string]*Proposal
	versions  map[string][]Version // by item, oldest first (without the files' version 1)
}

// ErrForbidden and ErrNotFound are returned (wrapped) for a department that
// may not do what it asked, and for an unknown proposal or version.
var (
	ErrForbidden = errors.New("forbidden")
	ErrNotFound  = errors.New("not found")
	ErrState     = errors.New("not allowed in this state")
)

// RuleError is a proposal refused by a rule: the rule, the field (if
// any) and why.
type RuleError struct {
	Rule, Field, Reason string
}

func (e *RuleError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: field %s: %s", e.Rule, e.Field, e.Reason)
	}
	return e.Rule + ": " + e.Reason
}

// Open reads the proposals and versions back and overlays the approved
// versions on the catalog's files (Catalog).
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Catalog == nil || len(cfg.Kafka) == 0 {
		return nil, errors.New("proposals: a catalog and Kafka options are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cal, err := control.NewCalendar(cfg.Catalog.Calendar)
	if err != nil {
		return nil, err
	}
	cl, err := kafkaconn.NewClient(cfg.Kafka, kgo.DefaultProduceTopic(Topic))
	if err != nil {
		return nil, fmt.Errorf("proposals: %w", err)
	}
	s := &Service{cfg: cfg, cal: cal, cl: cl, cat: cfg.Catalog, proposals: map[string]*Proposal{}, versions: map[string][]Version{}}
	err = kafkaconn.ReadAll(ctx, cfg.Kafka, Topic, func(r *kgo.Record) {
		k := string(r.Key)
		switch {
		case strings.HasPrefix(k, "proposal/"):
			var p Proposal
			if json.Unmarshal(r.Value, &p) == nil && p.Item != nil {
				p.Item = p.Item.WithFields(p.Item.Fields) // indexed
				s.proposals[p.ID] = &p
			}
		case strings.HasPrefix(k, "version/"):
			var v Version
			if json.Unmarshal(r.Value, &v) == nil && v.Def != nil {
				v.Def = v.Def.WithFields(v.Def.Fields) // indexed
				s.versions[v.Item] = append(s.versions[v.Item], v)
			}
		}
	})
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("proposals: load: %w", err)
	}
	var latest []*catalog.Item
	for _, vs := range s.versions {
		sort.Slice(vs, func(i, j int) bool { return vs[i].Version < vs[j].Version })
		latest = append(latest, vs[len(vs)-1].Def)
	}
	if len(latest) > 0 {
		// One validation for all of them; should one no longer fit the
		// files (edited by hand since), each is tried alone and the files'
		// catalog stands for those that do not.
		if next, err := s.cat.WithItems(latest...); err == nil {
			s.cat = next
		} else {
			for _, it := range latest {
				if next, err := s.cat.WithItem(it); err != nil {
					cfg.Log.Warn("proposals: an approved version no longer fits the catalog's files: the files' catalog stands for it", "item", it.Code, "err", err)
				} else {
					s.cat = next
				}
			}
		}
	}
	return s, nil
}

// Close closes its Kafka client.
func (s *Service) Close() { s.cl.Close() }

// Catalog is the current catalog: the files, with every approved version.
func (s *Service) Catalog() *catalog.Catalog {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cat
}

func (s *Service) save(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("proposals: save %s: %w", key, err)
	}
	return nil
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "prp-" + hex.EncodeToString(b)
}

// Propose records department dept's proposal of item (its whole
// definition) with its reason, after the checks; a proposal that fails one
// is refused with the rule and the field named, and not kept.
func (s *Service) Propose(ctx context.Context, dept string, item *catalog.Item, reason string) (*Proposal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cat.Department(dept) == nil {
		return nil, &RuleError{Rule: "department", Reason: fmt.Sprintf("unknown department %q", dept)}
	}
	if strings.TrimSpace(reason) == "" {
		return nil, &RuleError{Rule: "reason", Reason: "required: why the item is proposed or changed"}
	}
	if item == nil || item.Code == "" {
		return nil, &RuleError{Rule: "item", Reason: "the item's definition (its file's JSON, with its code) is required"}
	}
	old := s.cat.Item(item.Code)
	switch {
	case old != nil && old.Source != dept:
		return nil, fmt.Errorf("%w: %s is %s's item: a department proposes changes to its own items only", ErrForbidden, item.Code, old.Source)
	case item.Source != dept:
		return nil, fmt.Errorf("%w: source: the proposed item's source is %q: a department proposes items it is the source of (%s)", ErrForbidden, item.Source, dept)
	case item.Upstream != nil || (old != nil && old.Upstream != nil):
		return nil, fmt.Errorf("%w: %s is received from another bus: its source there changes it", ErrForbidden, item.Code)
	}
	next, err := s.cat.WithItem(item)
	if err != nil {
		return nil, &RuleError{Rule: "catalog.check", Reason: err.Error()}
	}
	proposed := next.Item(item.Code)
	if err := checkEvolution(old, proposed); err != nil {
		return nil, err
	}
	changes := Diff(old, proposed)
	if len(changes) == 0 {
		return nil, &RuleError{Rule: "unchanged", Reason: "the proposal changes nothing"}
	}
	now := s.cfg.Now().UTC()
	p := &Proposal{ID: newID(), Department: dept, Item: proposed, Base: s.current(item.Code), Reason: reason, State: Pending,
		Proposed: now, Due: s.cal.Deadline(now, ReviewDays).UTC(), Changes: changes, Duplicates: duplicatesOf(next, old, proposed)}
	if err := s.save(ctx, "proposal/"+p.ID, p); err != nil {
		return nil, err
	}
	s.proposals[p.ID] = p
	return clone(p), nil
}

// duplicatesOf lists the candidates of duplicate collection the proposal
// brings: those of the proposed item's new or changed fields.
func duplicatesOf(cat *catalog.Catalog, old, it *catalog.Item) []duplicates.Candidate {
	var out []duplicates.Candidate
	for _, c := range duplicates.CandidatesOf(cat, it) {
		if old != nil {
			if of, nf := old.Field(c.A.Field), it.Field(c.A.Field); of != nil && nf != nil && of.Title == nf.Title && of.Type == nf.Type {
				continue // collected before the proposal: not what it brings
			}
		}
		out = append(out, c)
	}
	return out
}

// current is an item's current version number: 0 when it does not exist,
// 1 for the catalog's files, then one per approved proposal.
func (s *Service) current(code string) int {
	if vs := s.versions[code]; len(vs) > 0 {
		return vs[len(vs)-1].Version
	}
	if s.cfg.Catalog.Item(code) != nil {
		return 1
	}
	return 0
}

// checkEvolution refuses what would break the item's subscribers or leak a
// field: a field removed or renamed, a type changed, a required field
// added, a field's grade lowered; and, whatever the catalog allows, a
// schema the registry's FULL compatibility refuses.
func checkEvolution(old, next *catalog.Item) error {
	if old == nil {
		return nil
	}
	for _, f := range old.Fields {
		nf := next.Field(f.Name)
		switch {
		case nf == nil:
			return &RuleError{Rule: "evolution.removed", Field: f.Name, Reason: "a field subscribers read may not be removed or renamed (a rename is a removal): add the new field beside it, optional, and keep this one"}
		case nf.Type != f.Type:
			return &RuleError{Rule: "evolution.type", Field: f.Name, Reason: fmt.Sprintf("its type may not change (%s to %s): subscribers decode it as %s", f.Type, nf.Type, f.Type)}
		case nf.Grade < f.Grade:
			return &RuleError{Rule: "grade.lowered", Field: f.Name, Reason: fmt.Sprintf("its grade may not be lowered (%d to %d): every grant of grade %d would see it in clear; a grade only rises", f.Grade, nf.Grade, nf.Grade)}
		case nf.Required && !f.Required:
			return &RuleError{Rule: "evolution.required", Field: f.Name, Reason: "an optional field may not become required: the records already published lack it"}
		}
	}
	for _, nf := range next.Fields {
		if old.Field(nf.Name) == nil && nf.Required {
			return &RuleError{Rule: "evolution.required", Field: nf.Name, Reason: "a field added to an item must be optional: the records already published lack it"}
		}
	}
	if next.Key != old.Key {
		return &RuleError{Rule: "evolution.key", Field: next.Key, Reason: fmt.Sprintf("the business key may not change (%s): every record is keyed by it", old.Key)}
	}
	os, err := schemas.For(old)
	if err != nil {
		return err
	}
	ns, err := schemas.For(next)
	if err != nil {
		return &RuleError{Rule: "schema", Reason: err.Error()}
	}
	if msgs := registry.Check(registry.Full, ns.Avro, []avro.Schema{os.Avro}); len(msgs) > 0 {
		return &RuleError{Rule: "evolution.compatibility", Reason: "the new schema is not FULL-compatible with the current one: " + strings.Join(msgs, "; ")}
	}
	return nil
}

// Decide records the data authority's verdict: approve (the item's next
// version, applied), changes (the department proposes again) or refuse;
// the two last need a reason.
func (s *Service) Decide(ctx context.Context, id, by, verdict, reason string) (*Proposal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.proposals[id]
	if !ok {
		return nil, fmt.Errorf("proposals: %w: %s", ErrNotFound, id)
	}
	if by != s.cat.Authority {
		return nil, fmt.Errorf("%w: only the data authority (%s) reviews proposals", ErrForbidden, s.cat.Authority)
	}
	if p.State != Pending {
		return nil, fmt.Errorf("%w: %s is %s", ErrState, id, p.State)
	}
	next := clone(p)
	next.DecidedBy, next.Decided, next.Verdict = by, s.cfg.Now().UTC(), reason
	switch verdict {
	case "approve":
		if cur := s.current(p.Item.Code); cur != p.Base {
			return nil, fmt.Errorf("%w: %s changes version %d of %s, which is now at %d: the department proposes again", ErrState, id, p.Base, p.Item.Code, cur)
		}
		cat, err := s.cat.WithItem(p.Item)
		if err != nil {
			return nil, &RuleError{Rule: "catalog.check", Reason: err.Error()}
		}
		next.State, next.Version = Approved, p.Base+1
		v := Version{Item: p.Item.Code, Version: next.Version, Def: p.Item, Proposal: p.ID, ProposedBy: p.Department, ApprovedBy: by, At: next.Decided}
		if err := s.save(ctx, fmt.Sprintf("version/%s/%d", v.Item, v.Version), v); err != nil {
			return nil, err
		}
		s.versions[v.Item] = append(s.versions[v.Item], v)
		s.cat = cat
		if s.cfg.Apply != nil {
			if err := s.cfg.Apply(ctx, cat, cat.Item(p.Item.Code)); err != nil {
				next.ApplyError = err.Error()
				s.cfg.Log.Warn("proposals: the approved version could not be applied now (it is kept: applied at the next start)", "item", v.Item, "version", v.Version, "err", err)
			}
		}
	case "changes", "refuse":
		if strings.TrimSpace(reason) == "" {
			return nil, &RuleError{Rule: "reason", Reason: "required: what to change, or why it is refused"}
		}
		next.State = Refused
		if verdict == "changes" {
			next.State = ChangesRequested
		}
	default:
		return nil, &RuleError{Rule: "verdict", Reason: fmt.Sprintf("%q: approve, changes or refuse", verdict)}
	}
	if err := s.save(ctx, "proposal/"+id, next); err != nil {
		return nil, err
	}
	s.proposals[id] = next
	return clone(next), nil
}

// Overdue says whether the proposal waits past its deadline.
func (p *Proposal) Overdue(now time.Time) bool { return p.State == Pending && now.After(p.Due) }

// Tick escalates the proposals pending past their deadline, once each:
// marked escalated (the portal and the API show it) and logged as a
// warning for the authority's management (the reviewer is the authority).
func (s *Service) Tick(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for id, p := range s.proposals {
		if !p.Overdue(now) || p.Escalated {
			continue
		}
		next := clone(p)
		next.Escalated = true
		if err := s.save(ctx, "proposal/"+id, next); err != nil {
			return err
		}
		s.proposals[id] = next
		s.cfg.Log.Warn("proposals: a proposal waits past its review deadline", "proposal", id, "department", p.Department, "item", p.Item.Code, "due", p.Due)
	}
	return nil
}

// List lists the proposals dept may see: the authority all, a department
// its own; the oldest first.
func (s *Service) List(dept string) []*Proposal {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Proposal
	for _, p := range s.proposals {
		if dept == s.cat.Authority || p.Department == dept {
			out = append(out, clone(p))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Proposed.Before(out[j].Proposed) })
	return out
}

// History lists an item's versions, the catalog's files' (1) first.
func (s *Service) History(code string) ([]Version, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Version
	if it := s.cfg.Catalog.Item(code); it != nil {
		out = append(out, Version{Item: code, Version: 1, Def: it})
	}
	out = append(out, s.versions[code]...)
	if len(out) == 0 {
		return nil, fmt.Errorf("proposals: %w: no item %s", ErrNotFound, code)
	}
	return out, nil
}

// DiffVersions says what changed from version a to b of an item.
func (s *Service) DiffVersions(code string, a, b int) ([]string, error) {
	h, err := s.History(code)
	if err != nil {
		return nil, err
	}
	at := func(n int) (*catalog.Item, error) {
		if n == 0 {
			return nil, nil
		}
		for _, v := range h {
			if v.Version == n {
				return v.Def, nil
			}
		}
		return nil, fmt.Errorf("proposals: %w: %s has no version %d", ErrNotFound, code, n)
	}
	x, err := at(a)
	if err != nil {
		return nil, err
	}
	y, err := at(b)
	if err != nil {
		return nil, err
	}
	return Diff(x, y), nil
}

// Diff lists what changes from item a to b (a nil: b is new), one line per
// change: the item's settings, then fields added, removed and changed.
func Diff(a, b *catalog.Item) []string {
	if a == nil {
		if b == nil {
			return nil
		}
		out := []string{fmt.Sprintf("new item %s (%s), source %s, share %s, open %s", b.Code, b.Name, b.Source, b.Share, b.Open)}
		for _, f := range b.Fields {
			out = append(out, fmt.Sprintf("+ field %s %s grade %d", f.Name, f.Type, f.Grade))
		}
		return out
	}
	var out []string
	set := func(what string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			out = append(out, fmt.Sprintf("%s: %v -> %v", what, x, y))
		}
	}
	set("name", a.Name, b.Name)
	set("name_en", a.NameEN, b.NameEN)
	set("share", a.Share, b.Share)
	set("legal_basis", a.LegalBasis, b.LegalBasis)
	set("open", a.Open, b.Open)
	set("open_legal_basis", a.OpenLegalBasis, b.OpenLegalBasis)
	set("update_frequency", a.UpdateFrequency, b.UpdateFrequency)
	set("lookup", a.Lookup, b.Lookup)
	set("base", a.Base, b.Base)
	for _, f := range b.Fields {
		if a.Field(f.Name) == nil {
			out = append(out, fmt.Sprintf("+ field %s %s grade %d", f.Name, f.Type, f.Grade))
		}
	}
	for _, f := range a.Fields {
		nf := b.Field(f.Name)
		if nf == nil {
			out = append(out, "- field "+f.Name)
			continue
		}
		fa, _ := json.Marshal(f)
		fb, _ := json.Marshal(nf)
		if string(fa) != string(fb) {
			var ma, mb map[string]any
			_ = json.Unmarshal(fa, &ma)
			_ = json.Unmarshal(fb, &mb)
			keys := map[string]bool{}
			for k := range ma {
				keys[k] = true
			}
			for k := range mb {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			slices.Sort(sorted)
			for _, k := range sorted {
				if fmt.Sprint(ma[k]) != fmt.Sprint(mb[k]) {
					out = append(out, fmt.Sprintf("~ field %s %s: %v -> %v", f.Name, k, ma[k], mb[k]))
				}
			}
		}
	}
	return out
}

func clone(p *Proposal) *Proposal {
	c := *p
	c.Changes = slices.Clone(p.Changes)
	return &c
}
