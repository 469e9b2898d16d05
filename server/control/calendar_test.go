package control

import (
	"errors"
	"testing"
	"time"

	"github.com/jutong/jutong/model/catalog"
)

func sampleCalendar(t *testing.T) (*catalog.Catalog, *Calendar) {
	t.Helper()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	cal, err := NewCalendar(cat.Calendar)
	if err != nil {
		t.Fatal(err)
	}
	return cat, cal
}

func at(t *testing.T, cal *Calendar, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, cal.Location())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDeadlines counts working days over weekends, public holidays and the
// weekend days worked in exchange (调休), in Chongqing's time zone.
func TestDeadlines(t *testing.T) {
	_, cal := sampleCalendar(t)
	for _, tc := range []struct {
		from string
		days int
		want string // the last working day counted
	}{
		{"2026-11-24 10:00", 2, "2026-11-26"}, // Tuesday: Wednesday, Thursday
		{"2026-11-27 16:00", 2, "2026-12-01"}, // Friday: over the weekend to Tuesday
		{"2026-11-28 09:00", 2, "2026-12-01"}, // submitted on a Saturday: counted from Monday
		{"2026-11-27 16:00", 5, "2026-12-04"}, // five working days
		{"2026-11-27 16:00", 10, "2026-12-11"},
		{"2026-09-30 11:00", 2, "2026-10-09"}, // National Day week: Oct 1-7 off, Oct 8 and 9 count
		{"2026-10-09 11:00", 1, "2026-10-10"}, // Saturday Oct 10 is worked in exchange
		{"2026-09-18 11:00", 2, "2026-09-21"}, // Sunday Sep 20 is worked in exchange
		{"2026-09-24 11:00", 2, "2026-09-29"}, // Mid-Autumn Sep 25-27 off
		{"2026-02-13 18:00", 3, "2026-02-25"}, // Spring Festival: Sat Feb 14 worked, Feb 15-23 off
		{"2026-12-31 23:59", 1, "2027-01-04"}, // New Year's Day off, then the weekend
		{"2026-11-24 00:30", 2, "2026-11-26"}, // early morning, Beijing time
		{"2026-11-23 17:00", 2, "2026-11-25"}, // Monday 17:00 in Chongqing
	} {
		got := cal.Deadline(at(t, cal, tc.from), tc.days)
		want := at(t, cal, tc.want+" 00:00").AddDate(0, 0, 1).Add(-time.Millisecond)
		if !got.Equal(want) {
			t.Errorf("%d working days after %s: due %s, want end of %s", tc.days, tc.from, got.In(cal.Location()), tc.want)
		}
	}
	// The same instant in UTC counts the same as in Beijing time.
	utc := time.Date(2026, 11, 23, 17, 0, 0, 0, time.UTC) // Tuesday 01:00 in Chongqing
	if got, want := cal.Deadline(utc, 2), at(t, cal, "2026-11-26 00:00").AddDate(0, 0, 1).Add(-time.Millisecond); !got.Equal(want) {
		t.Errorf("UTC instant: due %s, want %s", got, want)
	}
}

// TestApplicationPaths walks the 2/5/10-day paths of the demand list:
// unconditional items granted after the authority's review, conditional
// items after the source's (10 days when unpublished), not-shared items
// refused with their legal basis, and escalation past a deadline.
func TestApplicationPaths(t *testing.T) {
	cat, cal := sampleCalendar(t)
	now := at(t, cal, "2026-11-27 16:00") // a Friday
	apply := func(dept, item string, r Request) *Application {
		t.Helper()
		r.Item = item
		if r.Purpose == "" {
			r.Purpose = "企业开办一件事"
		}
		a, err := newApplication(cat, cal, dept, r, now)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// Unconditional: the authority reviews within 2 working days, then the grant is automatic.
	a := apply("tax", "legal_person.enterprise_registration", Request{})
	if a.State != AuthorityReview || !a.Due.Equal(cal.Deadline(now, 2)) {
		t.Fatalf("unconditional: %s due %s", a.State, a.Due)
	}
	if err := a.decide(cat, cal, "tax", Verdict{Approve: true}, true, now); !errors.Is(err, ErrForbidden) {
		t.Fatalf("the applicant approved its own application: %v", err)
	}
	if err := a.decide(cat, cal, "big_data", Verdict{Approve: true}, true, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a.State != Granted || a.Grant == nil || len(a.Grant.Fields) != len(cat.Item(a.Item).Fields) {
		t.Fatalf("unconditional after the authority: %s %+v", a.State, a.Grant)
	}

	// Conditional and published: authority, then the source within 5 days.
	c := apply("health", "population.resident_registration", Request{Fields: []string{"name", "citizen_id", "division_code"}, Grade: 2})
	decided := now.Add(24 * time.Hour) // Saturday
	if err := c.decide(cat, cal, "big_data", Verdict{Approve: true}, true, decided); err != nil {
		t.Fatal(err)
	}
	if c.State != SourceReview || !c.Due.Equal(cal.Deadline(decided, 5)) {
		t.Fatalf("conditional: %s due %s", c.State, c.Due)
	}
	if err := c.decide(cat, cal, "big_data", Verdict{Approve: true}, true, decided); !errors.Is(err, ErrForbidden) {
		t.Fatalf("the authority decided the source's part: %v", err)
	}
	if err := c.decide(cat, cal, "public_security", Verdict{Approve: true, Grade: 3}, true, decided); err == nil {
		t.Fatal("the source raised the requested grade")
	}
	if err := c.decide(cat, cal, "public_security", Verdict{Approve: true, Grade: 1, Fields: []string{"name", "citizen_id"}}, true, decided); err != nil {
		t.Fatal(err)
	}
	if c.State != Granted || c.Grant.Grade != 1 || len(c.Grant.Fields) != 2 {
		t.Fatalf("conditional granted: %s %+v", c.State, c.Grant)
	}

	// Conditional, not yet published: the source has 10 working days.
	u := apply("hrss", "population.deaths", Request{})
	if err := u.decide(cat, cal, "big_data", Verdict{Approve: true}, false, now); err != nil {
		t.Fatal(err)
	}
	if !u.Due.Equal(cal.Deadline(now, 10)) {
		t.Fatalf("unpublished: due %s, want %s", u.Due, cal.Deadline(now, 10))
	}
	// Past the deadline with no decision: escalated once.
	if _, esc := u.tick(u.Due.Add(-time.Minute)); esc {
		t.Fatal("escalated before the deadline")
	}
	if _, esc := u.tick(u.Due.Add(time.Minute)); !esc || !u.Escalated || !u.Overdue(u.Due.Add(time.Minute)) {
		t.Fatal("not escalated after the deadline")
	}
	if _, esc := u.tick(u.Due.Add(time.Hour)); esc {
		t.Fatal("escalated twice")
	}
	if err := u.decide(cat, cal, "health", Verdict{Approve: false}, false, now); err == nil {
		t.Fatal("a refusal without a reason")
	}
	if err := u.decide(cat, cal, "health", Verdict{Approve: false, Reason: "用途与死亡医学证明无关"}, false, now); err != nil || u.State != Refused {
		t.Fatalf("refusal: %s %v", u.State, err)
	}

	// Not shared: refused at once, with the legal basis.
	n := apply("tax", "population.criminal_record", Request{})
	if n.State != Refused || n.Reason == "" || cat.Item("population.criminal_record").LegalBasis == "" {
		t.Fatalf("not shared: %s %q", n.State, n.Reason)
	}

	// Expiry and revocation.
	if exp, _ := a.tick(a.Grant.Until); !exp || a.State != Expired {
		t.Fatalf("expiry: %s", a.State)
	}
	if err := c.revoke(cat, "tax", "no", now); !errors.Is(err, ErrForbidden) {
		t.Fatalf("a third department revoked: %v", err)
	}
	if err := c.revoke(cat, "public_security", "用途已完成", now); err != nil || c.State != Revoked {
		t.Fatalf("revoke: %s %v", c.State, err)
	}
	// Bad requests name the field.
	for _, r := range []Request{{Item: "legal_person.nothing", Purpose: "x"}, {Item: "legal_person.enterprise_registration"},
		{Item: "legal_person.enterprise_registration", Purpose: "x", Fields: []string{"salary"}}} {
		var re *RequestError
		if _, err := newApplication(cat, cal, "tax", r, now); !errors.As(err, &re) {
			t.Errorf("%+v: %v", r, err)
		}
	}
}
