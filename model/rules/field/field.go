// Package field is the home of the content rules a catalog field may name
// (its "rules": uscc, citizen_id, division, not_future): for each, the kind
// of field it needs, its check at the door, a valid value for the
// generators, and how a grant that masks the field sees it. The catalog
// accepts a rule this package has, the record rules (package rules) apply
// it, the synthetic departments make values that pass it and the feeds mask
// with it: a new field rule is one entry here, and its test.
//
// A leaf beside the identifier checks (package ident): the catalog imports
// it, so it imports nothing of Jutong's but ident.
package field

import (
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jutong/jutong/model/ident"
)

// Kind is the kind of field a rule applies to.
type Kind int

const (
	Text Kind = iota // string fields
	Time             // date and timestamp fields
)

// Rule is one field rule.
type Rule struct {
	Name string // as the catalog names it
	Kind Kind
	Doc  string
	// CheckText (a Text rule) says what is wrong with a value: the violated
	// rule's name (e.g. uscc.checksum) and why, or ok.
	CheckText func(s string, now time.Time) (rule, reason string, ok bool)
	// CheckTime (a Time rule) likewise.
	CheckTime func(t, now time.Time) (rule, reason string, ok bool)
	// Example is a valid value (a Text rule), in division when the value
	// has one (a six-digit GB/T 2260 code).
	Example func(r *rand.Rand, division string, now time.Time) string
	// Corrupt breaks a valid value so that the check fails on it (nil:
	// the rule has no check character to break), for the generators'
	// refused records.
	Corrupt func(s string) string
	// Mask is how a grant that masks the field sees a value (ok false: the
	// value is not of the rule's form, and masks as any text); MaskDoc says
	// it in words.
	Mask    func(s string) (string, bool)
	MaskDoc string
}

// The rules' names, as the catalog names them.
const (
	USCC      = "uscc"
	CitizenID = "citizen_id"
	Division  = "division"
	NotFuture = "not_future"
)

// rules is the table; read only.
var rules = []Rule{
	{
		Name: USCC, Kind: Text, Doc: "a unified social credit code, GB 32100: alphabet and check character",
		CheckText: identCheck(func(s string, _ time.Time) error { return ident.CheckUSCC(s) }),
		Example:   func(r *rand.Rand, division string, _ time.Time) string { return ident.NewUSCC(r, division) },
		Corrupt:   breakLast,
		Mask:      keep(8, 0, 18), MaskDoc: "first 8 characters",
	},
	{
		Name: CitizenID, Kind: Text, Doc: "a citizen ID number, GB 11643: division, birth date not in the future, check character",
		CheckText: identCheck(ident.CheckCitizenID),
		Example: func(r *rand.Rand, division string, now time.Time) string {
			days := 365*18 + r.IntN(365*62+1) // 18 to 80 years old
			return ident.NewCitizenID(r, division, now.Truncate(24*time.Hour).AddDate(0, 0, -days), r.IntN(2) == 0)
		},
		Corrupt: breakLast,
		Mask:    keep(6, 4, 18), MaskDoc: "first 6 and last 4 characters",
	},
	{
		Name: Division, Kind: Text, Doc: "an administrative division code, GB/T 2260: six digits, a code the shipped list has (current or since abolished: model/ident/data/divisions.tsv)",
		CheckText: identCheck(func(s string, _ time.Time) error { return ident.CheckDivision(s) }),
		Example:   func(_ *rand.Rand, division string, _ time.Time) string { return division },
	},
	{
		Name: NotFuture, Kind: Time, Doc: "a date or time not after the moment it is checked",
		CheckTime: func(t, now time.Time) (string, string, bool) {
			if t.After(now) {
				return NotFuture, t.Format(time.RFC3339) + " is in the future", false
			}
			return "", "", true
		},
	},
}

// Lookup returns the rule of that name.
func Lookup(name string) (Rule, bool) {
	i := slices.IndexFunc(rules, func(r Rule) bool { return r.Name == name })
	if i < 0 {
		return Rule{}, false
	}
	return rules[i], true
}

// Names lists every rule's name.
func Names() []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Name
	}
	return out
}

// identCheck adapts an identifier check of package ident.
func identCheck(check func(s string, now time.Time) error) func(string, time.Time) (string, string, bool) {
	return func(s string, now time.Time) (string, string, bool) {
		if err := check(s, now); err != nil {
			if ie, ok := err.(*ident.Error); ok {
				return ie.Rule, ie.Error(), false
			}
			return "", err.Error(), false
		}
		return "", "", true
	}
}

// breakLast changes the check character (the last).
func breakLast(s string) string {
	if s == "" {
		return s
	}
	repl := byte('0')
	if s[len(s)-1] == '0' {
		repl = '1'
	}
	return s[:len(s)-1] + string(repl)
}

// keep masks a value of n bytes but its first head and last tail bytes.
func keep(head, tail, n int) func(string) (string, bool) {
	return func(s string) (string, bool) {
		if len(s) != n {
			return "", false
		}
		return s[:head] + strings.Repeat("*", n-head-tail) + s[n-tail:], true
	}
}
