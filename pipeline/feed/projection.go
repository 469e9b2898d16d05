// Package feed delivers an item to a department as its grant allows: the
// approved fields only, and those graded above the grant's grade masked.
//
// A grant that covers every field of an item in clear reads the item's own
// topic. Any other grant reads a projected feed, a topic of its own
// (_jutong.feed.<department>.<item>) that Jutong writes from the item's topic
// through the pipeline runtime, exactly once (records and ledger in one Kafka
// transaction). The department's ACLs name only the feed, so the unmasked
// values never reach it, whatever Kafka client it uses.
package feed

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules/field"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// Grant is what a projection needs of a grant.
type Grant struct {
	ID, Department, Item string
	Fields               []string
	Grade                int
	// KeySecret keys the pseudonyms that stand for the records' keys when
	// the grant masks the key (GrantKeySecret); nil keys them with the
	// grant's id, which keeps them unique but not secret (tests).
	KeySecret []byte
}

// GrantKeySecret derives a grant's KeySecret from the bus's secret: each
// grant's pseudonyms are its own, and none can be computed without the
// bus's secret.
func GrantKeySecret(secret []byte, grantID string) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(grantID))
	return mac.Sum(nil)
}

// Projection is how one grant sees one item: which fields travel, and which
// of those are masked.
type Projection struct {
	Source *catalog.Item // the item as published
	Item   *catalog.Item // the item as delivered: kept fields, masked ones as optional strings
	masked map[string]bool
	secret []byte // keys the pseudonyms of masked keys
	// srcIndex is, for each of Item's fields, its index in Source's
	// (ApplyRow), set by Project.
	srcIndex []int
}

// Project works out a grant's projection; Identity says whether it changes
// nothing (every field, none masked), in which case the grant reads the item
// topic itself.
func Project(it *catalog.Item, g Grant) *Projection {
	p := &Projection{Source: it, masked: map[string]bool{}, secret: g.KeySecret}
	if len(p.secret) == 0 {
		p.secret = []byte(g.ID)
	}
	var fields []*catalog.Field
	for _, f := range it.Fields {
		if !slices.Contains(g.Fields, f.Name) && f.Name != it.Key {
			continue // not approved: dropped
		}
		if f.Grade > g.Grade {
			// Masked, the business key included: the feed's records are
			// keyed by the masked key, in the partition of the clear one.
			p.masked[f.Name] = true
			m := *f
			m.Type, m.Required, m.Rules, m.Symbols, m.Min, m.Max = catalog.TypeString, f.Name == it.Key, nil, nil, nil, nil
			m.Precision, m.Scale = 0, 0
			m.Title = f.Title + "（已脱敏）"
			fields = append(fields, &m)
			continue
		}
		fields = append(fields, f)
	}
	p.Item = it.WithFields(fields)
	p.indexFields()
	return p
}

// Topic is the topic a grant of dept reads the projected item on: the
// item's own when the projection changes nothing, else the grant's feed.
// The one place that decides it (ACLs, snapshots, lookups' schemas).
func (p *Projection) Topic(dept, grant string) string {
	if p.Identity() {
		return p.Source.Topic()
	}
	return topicname.Feed(dept, p.Source.Code, grant)
}

// Identity says whether the projection delivers the item unchanged.
func (p *Projection) Identity() bool {
	return len(p.masked) == 0 && len(p.Item.Fields) == len(p.Source.Fields)
}

// Delivers says whether the grant sees a field in clear: approved, and not
// above its grade. Only such a field may be named in what the grant does
// (a lookup by its value, a dispute of it): naming a masked or dropped one
// would tell the grant what it may not see.
func (p *Projection) Delivers(field string) bool {
	return p.Item.Field(field) != nil && !p.masked[field]
}

// Masked lists the masked fields.
func (p *Projection) Masked() []string {
	var out []string
	for _, f := range p.Item.Fields {
		if p.masked[f.Name] {
			out = append(out, f.Name)
		}
	}
	return out
}

// Dropped lists the fields not delivered.
func (p *Projection) Dropped() []string {
	var out []string
	for _, f := range p.Source.Fields {
		if p.Item.Field(f.Name) == nil {
			out = append(out, f.Name)
		}
	}
	return out
}

// Apply projects one record's data (nil for a delete).
func (p *Projection) Apply(data map[string]any) map[string]any {
	if data == nil {
		return nil
	}
	out := make(map[string]any, len(p.Item.Fields))
	for _, f := range p.Item.Fields {
		v := data[f.Name]
		if p.masked[f.Name] {
			if v == nil {
				out[f.Name] = nil
			} else {
				out[f.Name] = Mask(p.Source.Field(f.Name), v)
			}
			continue
		}
		out[f.Name] = v
	}
	return out
}

// ApplyRow projects row i of a batch decoded into columns (nil for a
// delete): what Apply gives for the same record's data, boxing only the
// values delivered.
func (p *Projection) ApplyRow(c *schemas.Columns, i int) map[string]any {
	if !c.HasData[i] {
		return nil
	}
	out := make(map[string]any, len(p.Item.Fields))
	for k, f := range p.Item.Fields {
		v := c.Value(p.srcIndex[k], i)
		if p.masked[f.Name] && v != nil {
			v = Mask(p.Source.Fields[p.srcIndex[k]], v)
		}
		out[f.Name] = v
	}
	return out
}

// indexFields notes where each delivered field is among the source's.
func (p *Projection) indexFields() {
	idx := make([]int, len(p.Item.Fields))
	for k, f := range p.Item.Fields {
		idx[k] = slices.IndexFunc(p.Source.Fields, func(g *catalog.Field) bool { return g.Name == f.Name })
	}
	p.srcIndex = idx
}

// Mask renders a value with its identifying part hidden: a value of a field
// rule's form as the rule masks it (citizen IDs keep their first 6 and last
// 4 characters, the division and the check; credit codes their first 8:
// package field), names their first character, other text its first and
// last quarter; numbers, dates and times are hidden whole.
func Mask(f *catalog.Field, v any) string {
	switch x := v.(type) {
	case string:
		if r, ok := maskingRule(f); ok {
			if m, ok := r.Mask(x); ok {
				return m
			}
		}
		n := utf8.RuneCountInString(x)
		switch {
		case n <= 1:
			return "*"
		case n <= 4: // a personal name
			_, size := utf8.DecodeRuneInString(x)
			return x[:size] + strings.Repeat("*", n-1)
		default:
			keep := n / 4
			runes := []rune(x)
			return string(runes[:keep]) + strings.Repeat("*", n-2*keep) + string(runes[n-keep:])
		}
	case *big.Rat, int64, int, float64, float32:
		return "***"
	case time.Time:
		return "****-**-**"
	case bool:
		return "*"
	}
	return "***"
}

// Key projects an event's key. A key the grant masks becomes a pseudonym:
// "k" and 32 hex digits of an HMAC-SHA256 of the key under the grant's
// secret, stable and unique per key (two citizen IDs whose masked forms
// look alike stay two keys), the same in the feed and the lookups, and not
// computable without the bus's secret. The record's key field shows the
// masked form.
func (p *Projection) Key(key string) string {
	if !p.masked[p.Source.Key] {
		return key
	}
	mac := hmac.New(sha256.New, p.secret)
	mac.Write([]byte(key))
	return "k" + hex.EncodeToString(mac.Sum(nil)[:16])
}

// Describe documents the projection, for `jutong grants --show` and the docs.
func (p *Projection) Describe() string {
	var b strings.Builder
	for _, f := range p.Source.Fields {
		switch {
		case p.Item.Field(f.Name) == nil:
			fmt.Fprintf(&b, "  %-28s grade %d  dropped\n", f.Name, f.Grade)
		case p.masked[f.Name]:
			fmt.Fprintf(&b, "  %-28s grade %d  masked (%s)\n", f.Name, f.Grade, maskRule(f))
		default:
			fmt.Fprintf(&b, "  %-28s grade %d  clear\n", f.Name, f.Grade)
		}
	}
	return b.String()
}

// maskingRule is the field's rule that says how to mask its values (package
// field), if it has one.
func maskingRule(f *catalog.Field) (field.Rule, bool) {
	for _, name := range f.Rules {
		if r, ok := field.Lookup(name); ok && r.Mask != nil {
			return r, true
		}
	}
	return field.Rule{}, false
}

func maskRule(f *catalog.Field) string {
	if r, ok := maskingRule(f); ok {
		return r.MaskDoc
	}
	switch {
	case f.Type == catalog.TypeString || f.Type == catalog.TypeEnum:
		return "first and last quarter; names their first character"
	default:
		return "hidden whole"
	}
}

// Schema is the projected item's change-event schema.
func (p *Projection) Schema() (*schemas.Schema, error) { return schemas.For(p.Item) }
