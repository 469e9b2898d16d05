// Package duplicates finds the same datum collected twice (重复采集): a
// field that two items (of two departments, or of one) collect about the
// same citizen or enterprise. Candidates come from the catalog (the same
// name, title and type, in items about the same kind of subject: a citizen
// ID, a USCC); the data confirms them: joined on the subject's identifier
// in the base databases (PostgreSQL), how many subjects both items hold and
// how often the two values agree. The data authority sees the ranked list
// with its evidence (jutong catalog duplicates; docs/catalog.md).
package duplicates

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules/field"
)

// Side is one item's field of a candidate, and the field identifying the
// subject in that item.
type Side struct {
	Item, Source, Field, Subject string
}

// Candidate is a field two items may both collect.
type Candidate struct {
	A, B Side
	// Kind is the subject's identifier kind (citizen_id, uscc).
	Kind string
	// Score ranks the catalog's evidence: the same name (2), title (2),
	// type (1), two departments (1).
	Score    int
	Evidence []string
	// Data is what the base databases say (Measure), nil before.
	Data *Overlap
}

// Overlap is the data's evidence for a candidate.
type Overlap struct {
	Subjects int64 // subjects (by identifier) with a value in both items
	Equal    int64 // of those, with the same value
}

// Share is the part of the shared subjects whose values agree.
func (o *Overlap) Share() float64 {
	if o == nil || o.Subjects == 0 {
		return 0
	}
	return float64(o.Equal) / float64(o.Subjects)
}

// subjects lists the fields identifying what an item's records are about,
// by kind (field rule uscc or citizen_id): its key when the key is one
// (an enterprise's USCC: its legal representative's citizen ID is not what
// the record is about), else its identifier fields.
func subjects(it *catalog.Item) map[string][]string {
	out := map[string][]string{}
	if k := it.KeyField(); k != nil {
		for _, r := range []string{field.CitizenID, field.USCC} {
			if k.HasRule(r) {
				return map[string][]string{r: {k.Name}}
			}
		}
	}
	for _, f := range it.Fields {
		for _, r := range []string{field.CitizenID, field.USCC} {
			if f.HasRule(r) {
				out[r] = append(out[r], f.Name)
			}
		}
	}
	return out
}

// Candidates lists, best first, the fields that pairs of items about the
// same kind of subject both collect, by the catalog: a field (not an
// identifier) of the same name or the same title and the same type. Items
// received from another bus are that bus's data, not collected here, and
// are left out.
func Candidates(cat *catalog.Catalog) []Candidate {
	var out []Candidate
	items := collected(cat)
	for i, a := range items {
		for _, b := range items[i+1:] {
			out = append(out, pair(a, b)...)
		}
	}
	rank(out)
	return out
}

// CandidatesOf is Candidates for the pairs of one item (it, as side A)
// with every other: what a proposal of it brings, without pairing the
// whole catalog.
func CandidatesOf(cat *catalog.Catalog, it *catalog.Item) []Candidate {
	var out []Candidate
	if it.Upstream != nil {
		return nil
	}
	for _, b := range collected(cat) {
		if b.Code != it.Code {
			out = append(out, pair(it, b)...)
		}
	}
	rank(out)
	return out
}

// collected are the items this bus collects (not those received).
func collected(cat *catalog.Catalog) []*catalog.Item {
	return slices.DeleteFunc(slices.Clone(cat.Items), func(it *catalog.Item) bool { return it.Upstream != nil })
}

// pair lists the candidates of two items: for each kind of subject both
// are about (one identifier field each), each two non-identifier fields of
// the same type with the same name or title.
func pair(a, b *catalog.Item) []Candidate {
	var out []Candidate
	sa, sb := subjects(a), subjects(b)
	for _, kind := range []string{field.CitizenID, field.USCC} {
		if len(sa[kind]) != 1 || len(sb[kind]) != 1 {
			continue // about no such subject, or about several (whose?)
		}
		for _, fa := range a.Fields {
			for _, fb := range b.Fields {
				if c, ok := match(a, b, fa, fb); ok {
					c.Kind, c.A.Subject, c.B.Subject = kind, sa[kind][0], sb[kind][0]
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// match scores two fields by the catalog's evidence.
func match(a, b *catalog.Item, fa, fb *catalog.Field) (Candidate, bool) {
	if isIdentifier(fa) || isIdentifier(fb) || fa.Type != fb.Type {
		return Candidate{}, false
	}
	c := Candidate{A: Side{Item: a.Code, Source: a.Source, Field: fa.Name}, B: Side{Item: b.Code, Source: b.Source, Field: fb.Name}}
	if fa.Name == fb.Name {
		c.Score += 2
		c.Evidence = append(c.Evidence, "same name "+fa.Name)
	}
	if fa.Title == fb.Title {
		c.Score += 2
		c.Evidence = append(c.Evidence, "same title "+fa.Title)
	}
	if c.Score == 0 {
		return Candidate{}, false
	}
	c.Score++
	c.Evidence = append(c.Evidence, "same type "+string(fa.Type))
	if a.Source != b.Source {
		c.Score++
		c.Evidence = append(c.Evidence, fmt.Sprintf("two departments (%s, %s)", a.Source, b.Source))
	}
	return c, true
}

func isIdentifier(f *catalog.Field) bool {
	return f.HasRule(field.CitizenID) || f.HasRule(field.USCC)
}

// rank orders candidates: those the data measured, by how often the two
// values agree; then by the catalog's score; then by name.
func rank(cs []Candidate) {
	key := func(c Candidate) float64 {
		if c.Data == nil || c.Data.Subjects == 0 {
			return -1
		}
		return c.Data.Share()
	}
	slices.SortStableFunc(cs, func(x, y Candidate) int {
		if kx, ky := key(x), key(y); kx != ky {
			if kx > ky {
				return -1
			}
			return 1
		}
		if x.Score != y.Score {
			return y.Score - x.Score
		}
		return strings.Compare(x.A.Item+x.A.Field+x.B.Item+x.B.Field, y.A.Item+y.A.Field+y.B.Item+y.B.Field)
	})
}

// Measure asks the base databases (db: the PostgreSQL sink's database) for
// each candidate's overlap, and ranks them again. A candidate whose tables
// do not exist yet keeps no data.
func Measure(ctx context.Context, db *pgxpool.Pool, cat *catalog.Catalog, cs []Candidate) error {
	for i := range cs {
		c := &cs[i]
		ta, tb := table(cat.Item(c.A.Item)), table(cat.Item(c.B.Item))
		q := fmt.Sprintf(`SELECT count(*), count(*) FILTER (WHERE a.%[1]s::text = b.%[2]s::text)
FROM %[3]s a JOIN %[4]s b ON a.%[5]s = b.%[6]s
WHERE a.%[1]s IS NOT NULL AND b.%[2]s IS NOT NULL`,
			ident(c.A.Field), ident(c.B.Field), ta, tb, ident(c.A.Subject), ident(c.B.Subject))
		var o Overlap
		if err := db.QueryRow(ctx, q).Scan(&o.Subjects, &o.Equal); err != nil {
			if strings.Contains(err.Error(), "does not exist") {
				continue
			}
			return fmt.Errorf("duplicates: %s.%s ~ %s.%s: %w", c.A.Item, c.A.Field, c.B.Item, c.B.Field, err)
		}
		c.Data = &o
	}
	rank(cs)
	return nil
}

func table(it *catalog.Item) string {
	d, n := it.Namespace()
	return pgx.Identifier{d, n}.Sanitize()
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }
