package catalog

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// SharedList is a list of items shared between this bus's region and a
// neighbouring one (跨区域共享清单, e.g. 川渝共享清单), in lists/<code>.json:
// what this side offers the partner (items of this catalog the partner's
// department may apply for) and what it receives from it (items received
// from the partner's bus), as this side's data authority approved it. The
// partner's catalog holds the same list (same code) from its side; `jutong
// catalog lists --partner DIR` compares the two (docs/federation.md).
type SharedList struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	NameEN string `json:"name_en,omitempty"`
	// Partner is the partner region's bus (its catalog's "bus"); Department
	// the partner's department in this catalog: the principal its bridge
	// reads as (for the offers) or publishes as (for the receives: a
	// department whose "bus" is Partner).
	Partner    string `json:"partner"`
	Department string `json:"department"`
	// Agreement names the agreement the list rests on (its document).
	Agreement string   `json:"agreement"`
	Offers    []string `json:"offers,omitempty"`
	Receives  []string `json:"receives,omitempty"`
	// Approved is this side's approval: the data authority, and when.
	Approved Approval `json:"approved"`

	file string
}

// Approval is one side's approval of a shared list.
type Approval struct {
	By string `json:"by"` // the data authority's department code
	On string `json:"on"` // YYYY-MM-DD
}

// List returns the shared list of that code, or nil.
func (c *Catalog) List(code string) *SharedList {
	for _, l := range c.Lists {
		if l.Code == code {
			return l
		}
	}
	return nil
}

// OffersTo says whether dept is the partner of a shared list, and if so
// which lists offer it item (none: it may not apply for it).
func (c *Catalog) OffersTo(dept, item string) (partner bool, offering []string) {
	for _, l := range c.Lists {
		if l.Department != dept {
			continue
		}
		partner = true
		if slices.Contains(l.Offers, item) {
			offering = append(offering, l.Code)
		}
	}
	return partner, offering
}

// indexLists checks the shared lists.
func (c *Catalog) indexLists(add adder) {
	seen := map[string]bool{}
	for _, l := range c.Lists {
		f := l.file
		bad := func(format string, args ...any) {
			add(f, "", "", "shared list %s: "+format, append([]any{l.Code}, args...)...)
		}
		if !busNameRe.MatchString(l.Code) {
			add(f, "", "", "shared list %q: code must be lower case letters, digits and _", l.Code)
		}
		if want := "lists/" + l.Code + ".json"; f != "" && f != want {
			bad("file must be named %s", want)
		}
		if seen[l.Code] {
			bad("duplicate code")
		}
		seen[l.Code] = true
		switch {
		case strings.TrimSpace(l.Name) == "":
			bad("needs a name")
		case !busNameRe.MatchString(l.Partner) || l.Partner == c.BusName():
			bad("partner %q must be another bus's name", l.Partner)
		case strings.TrimSpace(l.Agreement) == "":
			bad("needs the agreement it rests on (agreement)")
		case len(l.Offers)+len(l.Receives) == 0:
			bad("offers nothing and receives nothing")
		}
		d := c.deptByCode[l.Department]
		if d == nil {
			bad("department %q: not a department of this catalog (the partner's principal here)", l.Department)
		}
		if l.Approved.By != c.Authority {
			bad("approved.by %q: the data authority (%s) approves a shared list", l.Approved.By, c.Authority)
		}
		if _, err := time.Parse(time.DateOnly, l.Approved.On); err != nil {
			bad("approved.on %q is not YYYY-MM-DD", l.Approved.On)
		}
		for _, code := range l.Offers {
			it := c.itemByCode[code]
			switch {
			case it == nil:
				bad("offers %q: no such item", code)
			case it.Share == ShareNone:
				bad("offers %s: the item is not shared (share none, %s)", code, it.LegalBasis)
			case it.Upstream != nil:
				bad("offers %s: a received item is offered by its source bus (%s), not passed on", code, it.Upstream.Bus)
			case it.Source == l.Department:
				bad("offers %s: the partner is its source", code)
			}
		}
		for _, code := range l.Receives {
			it := c.itemByCode[code]
			switch {
			case it == nil:
				bad("receives %q: no such item", code)
			case it.Upstream == nil || it.Upstream.Bus != l.Partner || it.Source != l.Department:
				bad("receives %s: must be an item received from %s (upstream bus %s, source %s)", code, l.Partner, l.Partner, l.Department)
			}
		}
		if len(l.Receives) > 0 && d != nil && d.Bus != l.Partner {
			bad("department %s must stand for the partner's bus (\"bus\": %q) to receive from it", l.Department, l.Partner)
		}
	}
}

// CompareLists compares this side's shared lists with the partner's
// catalog: for each list of the same code, what one side offers must be
// what the other receives (by the upstream item's code), and each side
// must have approved it. It returns one line per disagreement.
func CompareLists(here, partner *Catalog) []string {
	var out []string
	for _, l := range here.Lists {
		if l.Partner != partner.BusName() {
			continue
		}
		p := partner.List(l.Code)
		if p == nil {
			out = append(out, fmt.Sprintf("%s: %s has no list %s (not approved there)", l.Code, partner.BusName(), l.Code))
			continue
		}
		if p.Partner != here.BusName() {
			out = append(out, fmt.Sprintf("%s: %s's list names %q as its partner, not %s", l.Code, partner.BusName(), p.Partner, here.BusName()))
		}
		received := func(c *Catalog, codes []string) []string {
			var up []string
			for _, code := range codes {
				if it := c.Item(code); it != nil && it.Upstream != nil {
					up = append(up, it.Upstream.Item)
				}
			}
			slices.Sort(up)
			return up
		}
		offers, pOffers := slices.Sorted(slices.Values(l.Offers)), slices.Sorted(slices.Values(p.Offers))
		if r := received(partner, p.Receives); !slices.Equal(offers, r) {
			out = append(out, fmt.Sprintf("%s: %s offers %v, %s receives %v", l.Code, here.BusName(), offers, partner.BusName(), r))
		}
		if r := received(here, l.Receives); !slices.Equal(pOffers, r) {
			out = append(out, fmt.Sprintf("%s: %s offers %v, %s receives %v", l.Code, partner.BusName(), pOffers, here.BusName(), r))
		}
	}
	return out
}

// Negative is one entry of the negative list (负面清单): an item not shared
// with other departments, or not opened to the public, with the legal
// basis the catalog requires for it.
type Negative struct {
	Item       string `json:"item"`
	Name       string `json:"name"`
	Source     string `json:"source"`
	Withheld   string `json:"withheld"` // "shared" (share none: neither shared nor opened) or "opened" (open none)
	LegalBasis string `json:"legal_basis"`
}

// NegativeList is the catalog's negative list, by item code: every item
// not shared, then every shared one not opened.
func (c *Catalog) NegativeList() []Negative {
	var out []Negative
	for _, it := range c.Items {
		switch {
		case it.Share == ShareNone:
			out = append(out, Negative{Item: it.Code, Name: it.Name, Source: it.Source, Withheld: "shared", LegalBasis: it.LegalBasis})
		case it.Open == ShareNone:
			basis := it.OpenLegalBasis
			if basis == "" {
				basis = it.LegalBasis
			}
			out = append(out, Negative{Item: it.Code, Name: it.Name, Source: it.Source, Withheld: "opened", LegalBasis: basis})
		}
	}
	slices.SortFunc(out, func(a, b Negative) int { return strings.Compare(a.Item, b.Item) })
	return out
}
