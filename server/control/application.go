package control

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jutong/jutong/model/catalog"
)

// State is where an application stands.
type State string

// The states of an application (the demand list).
const (
	AuthorityReview State = "authority_review" // the data authority reviews (2 working days)
	SourceReview    State = "source_review"    // the source department decides (5, or 10 if unpublished)
	Granted         State = "granted"
	Refused         State = "refused"
	Revoked         State = "revoked"
	Expired         State = "expired"
)

// The review periods, in working days.
const (
	AuthorityDays   = 2
	SourceDays      = 5
	UnpublishedDays = 10 // the source has not published the item yet
)

// Application is a department's request to read one item, and what became of
// it.
type Application struct {
	ID         string    `json:"id"`
	Department string    `json:"department"`
	Item       string    `json:"item"`
	Purpose    string    `json:"purpose"`
	Fields     []string  `json:"fields"` // requested (all when empty at submission)
	Grade      int       `json:"grade"`  // the highest security grade requested in clear
	From       time.Time `json:"from"`
	Until      time.Time `json:"until"`
	// LookupRate is the lookups a second asked for (0: the bus's default).
	LookupRate float64   `json:"lookup_rate,omitempty"`
	Submitted  time.Time `json:"submitted"`
	State      State     `json:"state"`
	// Due is the deadline of the current review; Escalated is set when it
	// passed with no decision.
	Due       time.Time `json:"due,omitzero"`
	Escalated bool      `json:"escalated,omitempty"`
	// Reason is why it was refused, revoked or expired.
	Reason    string     `json:"reason,omitempty"`
	Decisions []Decision `json:"decisions,omitempty"`
	// Grant is what was approved (fields, grade, period), when granted.
	Grant *Grant `json:"grant,omitempty"`
}

// Decision is one reviewer's word.
type Decision struct {
	Stage   State     `json:"stage"`
	By      string    `json:"by"` // department code
	Approve bool      `json:"approve"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Grant is an approved application's access: the department reads the item,
// the approved fields, those above Grade masked, from From until Until.
type Grant struct {
	ID         string    `json:"id"` // the application's id
	Department string    `json:"department"`
	Item       string    `json:"item"`
	Fields     []string  `json:"fields"`
	Grade      int       `json:"grade"`
	From       time.Time `json:"from"`
	Until      time.Time `json:"until"`
	// Purpose is what the grant was approved for: a lookup states it.
	Purpose string `json:"purpose,omitempty"`
	// LookupRate is the lookups a second it allows (0: the bus's default).
	LookupRate float64 `json:"lookup_rate,omitempty"`
}

// Active says whether the grant gives access at t.
func (g *Grant) Active(t time.Time) bool { return !t.Before(g.From) && t.Before(g.Until) }

// Open says whether the application still waits for a decision.
func (a *Application) Open() bool { return a.State == AuthorityReview || a.State == SourceReview }

// Overdue says whether its current review is past its deadline at t.
func (a *Application) Overdue(t time.Time) bool { return a.Open() && t.After(a.Due) }

// Request is what a department submits.
type Request struct {
	Item    string    `json:"item"`
	Purpose string    `json:"purpose"`
	Fields  []string  `json:"fields,omitempty"` // default: every field
	Grade   int       `json:"grade,omitempty"`  // default: the highest grade of the fields
	From    time.Time `json:"from,omitzero"`    // default: now
	Until   time.Time `json:"until,omitzero"`   // default: a year on
	// LookupRate is the lookups a second the department needs (default:
	// the bus's, 50); at most 10,000.
	LookupRate float64 `json:"lookup_rate,omitempty"`
}

// ErrForbidden is returned (wrapped) when the acting department may not do
// what it asked.
var ErrForbidden = errors.New("forbidden")

// ErrState is returned (wrapped) when the application is not in a state
// that allows the action.
var ErrState = errors.New("not allowed in this state")

// RequestError names the request field that is wrong.
type RequestError struct {
	Field, Reason string
}

func (e *RequestError) Error() string { return e.Field + ": " + e.Reason }

// newApplication checks a request and makes the application: refused at
// once, with the legal basis, when the item is not shared.
func newApplication(cat *catalog.Catalog, cal *Calendar, dept string, r Request, now time.Time) (*Application, error) {
	if cat.Department(dept) == nil {
		return nil, &RequestError{"department", fmt.Sprintf("unknown department %q", dept)}
	}
	it := cat.Item(r.Item)
	if it == nil {
		return nil, &RequestError{"item", fmt.Sprintf("unknown catalog item %q", r.Item)}
	}
	if strings.TrimSpace(r.Purpose) == "" {
		return nil, &RequestError{"purpose", "required: say what the data is for"}
	}
	if it.Source == dept {
		return nil, &RequestError{"item", fmt.Sprintf("%s is %s's own item: its source does not apply to read it", it.Code, dept)}
	}
	if partner, offering := cat.OffersTo(dept, it.Code); partner && len(offering) == 0 {
		return nil, fmt.Errorf("%w: item: %s is a neighbouring region's bus here: it applies only for the items a shared list offers it, and no list offers %s (catalog lists/)", ErrForbidden, dept, it.Code)
	}
	fields := r.Fields
	if len(fields) == 0 {
		for _, f := range it.Fields {
			fields = append(fields, f.Name)
		}
	}
	maxGrade := 1
	for _, name := range fields {
		f := it.Field(name)
		if f == nil {
			return nil, &RequestError{"fields", fmt.Sprintf("%s has no field %q", it.Code, name)}
		}
		maxGrade = max(maxGrade, f.Grade)
	}
	if !slices.Contains(fields, it.Key) {
		fields = append([]string{it.Key}, fields...) // the business key always travels
	}
	grade := r.Grade
	if grade == 0 {
		grade = maxGrade
	}
	if grade < 1 || grade > 4 {
		return nil, &RequestError{"grade", "must be 1 to 4"}
	}
	from, until := r.From, r.Until
	if from.IsZero() {
		from = now
	}
	if until.IsZero() {
		until = from.AddDate(1, 0, 0)
	}
	if !until.After(from) {
		return nil, &RequestError{"until", "must be after from"}
	}
	if r.LookupRate < 0 || r.LookupRate > 10000 {
		return nil, &RequestError{"lookup_rate", "lookups a second: 0 (the default) to 10000"}
	}
	a := &Application{ID: newID(), Department: dept, Item: it.Code, Purpose: r.Purpose, Fields: fields, Grade: grade,
		From: from.UTC(), Until: until.UTC(), LookupRate: r.LookupRate, Submitted: now.UTC()}
	if it.Share == catalog.ShareNone {
		a.State, a.Reason = Refused, "not shared (不予共享): "+it.LegalBasis
		a.Decisions = append(a.Decisions, Decision{Stage: AuthorityReview, By: cat.Authority, Reason: a.Reason, At: now.UTC()})
		return a, nil
	}
	a.State, a.Due = AuthorityReview, cal.Deadline(now, AuthorityDays)
	if dept == cat.Authority {
		// Nobody decides their own application: the authority's own go
		// to the item's source, whatever the item's sharing.
		a.State, a.Due = SourceReview, cal.Deadline(now, SourceDays)
	}
	return a, nil
}

// Verdict is a reviewer's decision; an approval may narrow the fields and
// lower the grade.
type Verdict struct {
	Approve bool     `json:"approve"`
	Reason  string   `json:"reason,omitempty"`
	Fields  []string `json:"fields,omitempty"`
	Grade   int      `json:"grade,omitempty"`
}

// decide applies a reviewer's verdict: the authority first; for a
// conditional item then the source department. published says whether the
// item has any record yet (an unpublished item gives its source 10 days).
func (a *Application) decide(cat *catalog.Catalog, cal *Calendar, by string, v Verdict, published bool, now time.Time) error {
	it := cat.Item(a.Item)
	if by == a.Department {
		return fmt.Errorf("%w: %s applied for application %s and cannot decide it (separation of duties)", ErrForbidden, by, a.ID)
	}
	switch a.State {
	case AuthorityReview:
		if by != cat.Authority {
			return fmt.Errorf("%w: the data authority (%s) reviews first, not %s", ErrForbidden, cat.Authority, by)
		}
	case SourceReview:
		if by != it.Source {
			return fmt.Errorf("%w: %s is decided by its source department %s, not %s", ErrForbidden, it.Code, it.Source, by)
		}
	default:
		return fmt.Errorf("%w: application %s is %s", ErrState, a.ID, a.State)
	}
	if !v.Approve && strings.TrimSpace(v.Reason) == "" {
		return &RequestError{"reason", "a refusal must say why"}
	}
	if err := a.narrow(it, v); err != nil {
		return err
	}
	a.Decisions = append(a.Decisions, Decision{Stage: a.State, By: by, Approve: v.Approve, Reason: v.Reason, At: now.UTC()})
	a.Escalated = false
	switch {
	case !v.Approve:
		a.State, a.Reason, a.Due = Refused, v.Reason, time.Time{}
	case a.State == AuthorityReview && it.Share == catalog.ShareConditional:
		days := SourceDays
		if !published {
			days = UnpublishedDays
		}
		a.State, a.Due = SourceReview, cal.Deadline(now, days)
	default:
		a.State, a.Due = Granted, time.Time{}
		a.Grant = &Grant{ID: a.ID, Department: a.Department, Item: a.Item, Fields: a.Fields, Grade: a.Grade, From: a.From, Until: a.Until,
			Purpose: a.Purpose, LookupRate: a.LookupRate}
	}
	return nil
}

// narrow applies an approval's narrower fields and lower grade.
func (a *Application) narrow(it *catalog.Item, v Verdict) error {
	if !v.Approve {
		return nil
	}
	if v.Grade != 0 {
		if v.Grade < 1 || v.Grade > a.Grade {
			return &RequestError{"grade", fmt.Sprintf("may only lower the requested grade %d", a.Grade)}
		}
		a.Grade = v.Grade
	}
	if len(v.Fields) > 0 {
		var kept []string
		for _, f := range v.Fields {
			if !slices.Contains(a.Fields, f) {
				return &RequestError{"fields", fmt.Sprintf("%q was not requested", f)}
			}
			kept = append(kept, f)
		}
		if !slices.Contains(kept, it.Key) {
			kept = append([]string{it.Key}, kept...)
		}
		a.Fields = kept
	}
	return nil
}

// revoke ends a grant (by the authority or the item's source).
func (a *Application) revoke(cat *catalog.Catalog, by, reason string, now time.Time) error {
	it := cat.Item(a.Item)
	if by != cat.Authority && by != it.Source {
		return fmt.Errorf("%w: only the data authority or %s's source may revoke", ErrForbidden, it.Code)
	}
	if a.State != Granted {
		return fmt.Errorf("%w: application %s is %s", ErrState, a.ID, a.State)
	}
	if strings.TrimSpace(reason) == "" {
		return &RequestError{"reason", "a revocation must say why"}
	}
	a.State, a.Reason = Revoked, reason
	a.Decisions = append(a.Decisions, Decision{Stage: Revoked, By: by, Reason: reason, At: now.UTC()})
	return nil
}

// tick moves time on: a grant past its end expires; a review past its
// deadline is escalated (once). It says what changed.
func (a *Application) tick(now time.Time) (expired, escalated bool) {
	if a.State == Granted && a.Grant != nil && !now.Before(a.Grant.Until) {
		a.State, a.Reason = Expired, "the granted period ended"
		return true, false
	}
	if a.Overdue(now) && !a.Escalated {
		a.Escalated = true
		return false, true
	}
	return false, false
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "app-" + hex.EncodeToString(b[:])
}
