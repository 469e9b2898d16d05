package synth

import (
	"crypto/rand"
	"fmt"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/ident"
	"github.com/jutong/jutong/model/rules/field"
	"github.com/jutong/jutong/schemas"
)

// Generator makes the change events of one catalog item: creates of new
// entities, updates and deletes of live ones, every value valid for the
// item's contract. It is not safe for concurrent use.
type Generator struct {
	it   *catalog.Item
	r    *mrand.Rand
	now  time.Time
	live []string
	pos  map[string]int
	seq  int
	n    int
	// UpdateEvery makes every n-th event an update of a live entity (0:
	// never); DeleteEvery does the same for deletes.
	UpdateEvery, DeleteEvery int
}

// New returns a generator for it: one update per three creates and one
// delete in forty by default.
func New(it *catalog.Item, seed uint64, now time.Time) *Generator {
	return &Generator{it: it, r: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: now.UTC(),
		pos: map[string]int{}, UpdateEvery: 4, DeleteEvery: 40}
}

// Item is the generator's catalog item.
func (g *Generator) Item() *catalog.Item { return g.it }

// Live returns how many entities exist after the events so far.
func (g *Generator) Live() int { return len(g.live) }

// Next returns the next change event.
func (g *Generator) Next() *schemas.Event {
	g.n++
	ev := &schemas.Event{ID: NewUUID(), EventTime: g.now.Add(-time.Duration(g.r.IntN(5000)) * time.Millisecond).Truncate(time.Millisecond)}
	switch {
	case g.DeleteEvery > 0 && g.n%g.DeleteEvery == 0 && len(g.live) > 0:
		ev.Op, ev.Key = schemas.OpDelete, g.live[g.r.IntN(len(g.live))]
		g.remove(ev.Key)
		return ev
	case g.UpdateEvery > 0 && g.n%g.UpdateEvery == 0 && len(g.live) > 0:
		ev.Op, ev.Key = schemas.OpUpdate, g.live[g.r.IntN(len(g.live))]
	default:
		ev.Op, ev.Key = schemas.OpCreate, g.newKey()
		if _, dup := g.pos[ev.Key]; dup {
			ev.Op = schemas.OpUpdate // a collision of a small key space
		} else {
			g.pos[ev.Key] = len(g.live)
			g.live = append(g.live, ev.Key)
		}
	}
	ev.Data = g.record(ev.Key)
	return ev
}

func (g *Generator) remove(k string) {
	i := g.pos[k]
	last := g.live[len(g.live)-1]
	g.live[i] = last
	g.pos[last] = i
	g.live = g.live[:len(g.live)-1]
	delete(g.pos, k)
}

func (g *Generator) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *Generator) division() string {
	return ident.ChongqingDivisions[g.r.IntN(len(ident.ChongqingDivisions))]
}

func (g *Generator) pastDate(minYears, maxYears int) time.Time {
	days := 365*minYears + g.r.IntN(365*(maxYears-minYears)+1)
	return g.now.Truncate(24*time.Hour).AddDate(0, 0, -days)
}

// ruled makes a valid value of the field's text rule (package field);
// ok is false for a field without one.
func (g *Generator) ruled(f *catalog.Field) (string, bool) {
	for _, name := range f.Rules {
		if r, ok := field.Lookup(name); ok && r.Example != nil {
			return r.Example(g.r, g.division(), g.now), true
		}
	}
	return "", false
}

// newKey makes a fresh business key in the key field's format.
func (g *Generator) newKey() string {
	f := g.it.KeyField()
	if v, ok := g.ruled(f); ok {
		return v
	}
	g.seq++
	year := g.now.Year()
	switch f.Name {
	case "decision_no":
		return fmt.Sprintf("渝%s市监处罚〔%d〕%05d号", strings.TrimSuffix(g.pick(districts), "区"), year, g.seq)
	case "permit_no":
		if g.it.Base == "license" {
			return fmt.Sprintf("JY1%s%06d%d", g.division(), g.seq, g.r.IntN(10))
		}
		return fmt.Sprintf("%s%d%06d", g.division(), year, g.seq)
	case "parcel_code":
		return fmt.Sprintf("%s%03d%03dGB%05d", g.division(), 1+g.r.IntN(20), 1+g.r.IntN(30), g.seq%100000)
	case "unit_no":
		return fmt.Sprintf("%s%03d%03dGB%05dF%08d", g.division(), 1+g.r.IntN(20), 1+g.r.IntN(30), g.r.IntN(100000), g.seq)
	case "address_code":
		return fmt.Sprintf("%s%012d", g.division(), g.seq)
	}
	prefix := strings.ToUpper(g.it.Code[strings.IndexByte(g.it.Code, '.')+1:][:2])
	return fmt.Sprintf("%s%d%08d", prefix, year, g.seq)
}

func (g *Generator) record(key string) map[string]any {
	rec := make(map[string]any, len(g.it.Fields))
	for _, f := range g.it.Fields {
		switch {
		case f.Name == g.it.Key:
			rec[f.Name] = key
		case !f.Required && g.r.IntN(5) == 0:
			rec[f.Name] = nil
		default:
			rec[f.Name] = g.value(f, rec)
		}
	}
	return rec
}

func (g *Generator) personName() string { return g.pick(surnames) + g.pick(givens) }

func (g *Generator) orgName() string {
	if g.it.Code == "legal_person.social_organization" {
		return "重庆市" + g.pick(trades) + g.pick(orgSuffixes)
	}
	return "重庆" + g.pick(tradeNames) + g.pick(trades) + g.pick(suffixes)
}

func (g *Generator) address() string {
	return fmt.Sprintf("重庆市%s%s%d号", g.pick(districts), g.pick(streets), 1+g.r.IntN(999))
}

// value makes one valid value of field f.
func (g *Generator) value(f *catalog.Field, rec map[string]any) any {
	switch f.Type {
	case catalog.TypeEnum:
		if g.r.IntN(2) == 0 {
			return f.Symbols[0] // the usual case is the most common
		}
		return g.pick(f.Symbols)
	case catalog.TypeBoolean:
		return g.r.IntN(4) == 0
	case catalog.TypeDate:
		if strings.HasPrefix(f.Name, "valid_until") {
			return g.now.Truncate(24*time.Hour).AddDate(1+g.r.IntN(9), 0, 0)
		}
		return g.pastDate(0, 30)
	case catalog.TypeTimestamp:
		return g.now.Add(-time.Duration(g.r.Int64N(int64(24 * time.Hour)))).Truncate(time.Millisecond)
	case catalog.TypeLong:
		lo, hi := bounds(f, 1, 5000)
		return int64(lo) + g.r.Int64N(int64(hi-lo)+1)
	case catalog.TypeDouble:
		lo, hi := bounds(f, 0, 1000)
		return math.Round((lo+g.r.Float64()*(hi-lo))*1e6) / 1e6
	case catalog.TypeDecimal:
		lo, hi := bounds(f, 0, 100000)
		hi = math.Min(hi, math.Pow10(f.Precision-f.Scale)-1)
		unit := int64(math.Pow10(f.Scale))
		span := int64((hi - lo) * float64(unit))
		return big.NewRat(int64(lo*float64(unit))+g.r.Int64N(span+1), unit)
	}
	return g.text(f, rec)
}

func bounds(f *catalog.Field, lo, hi float64) (float64, float64) {
	if f.Min != nil {
		lo = *f.Min
	}
	if f.Max != nil {
		hi = *f.Max
	}
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

// text makes a string value from the field's rules, name and title.
func (g *Generator) text(f *catalog.Field, rec map[string]any) string {
	if v, ok := g.ruled(f); ok {
		return v
	}
	t := f.Title
	switch {
	case f.Name == "geometry":
		x, y := 106.3+g.r.Float64()*0.4, 29.4+g.r.Float64()*0.3
		d := 0.001 + g.r.Float64()*0.002
		return fmt.Sprintf("POLYGON((%.6f %.6f, %.6f %.6f, %.6f %.6f, %.6f %.6f, %.6f %.6f))", x, y, x+d, y, x+d, y+d, x, y+d, x, y)
	case f.Name == "phone":
		return fmt.Sprintf("1%d%09d", 3+g.r.IntN(6), g.r.IntN(1_000_000_000))
	case f.Name == "industry_code":
		return g.pick(industries)
	case f.Name == "postcode":
		return fmt.Sprintf("40%04d", g.r.IntN(10000))
	case f.Name == "house_number":
		return fmt.Sprintf("%d号", 1+g.r.IntN(500))
	case f.Name == "street":
		return g.pick(streets)
	case f.Name == "parcel_code":
		return fmt.Sprintf("%s%03d%03dGB%05d", g.division(), 1+g.r.IntN(20), 1+g.r.IntN(30), g.r.IntN(100000))
	case f.Name == "unit_no":
		return fmt.Sprintf("%s%03d%03dGB%05dF%08d", g.division(), 1+g.r.IntN(20), 1+g.r.IntN(30), g.r.IntN(100000), g.r.IntN(100000000))
	case strings.Contains(t, "姓名") || t == "权利人" || t == "法定代表人":
		return g.personName()
	case t == "名称" && g.it.Code == "geography.administrative_division":
		return g.pick(districts)
	case strings.Contains(t, "名称"):
		return g.orgName()
	case strings.Contains(t, "地址") || strings.Contains(t, "住所") || strings.Contains(t, "坐落") || strings.Contains(t, "地点"):
		return g.address()
	case strings.Contains(t, "机关") || strings.Contains(t, "主管单位"):
		return "重庆市" + g.pick(districts) + "市场监督管理局"
	case strings.Contains(t, "机构") || strings.Contains(t, "接种单位"):
		return g.pick(hospitals)
	case t == "民族":
		return g.pick(ethnicities)
	case strings.Contains(t, "经营") || strings.Contains(t, "范围"):
		return g.pick(scopes)
	case strings.Contains(t, "违法行为"):
		return g.pick(violations)
	case strings.Contains(t, "依据"):
		return g.pick(penaltyLaws)
	case strings.Contains(t, "异常") || strings.Contains(t, "原因") && g.it.Code == "legal_person.abnormal_operation":
		return g.pick(abnormal)
	case strings.Contains(t, "死亡原因"):
		return g.pick(causes)
	case strings.Contains(t, "案由"):
		return g.pick(offences)
	case strings.Contains(t, "疫苗"):
		return g.pick(vaccines)
	case strings.Contains(t, "编号") || strings.Contains(t, "号"):
		return fmt.Sprintf("%s%d%08d", "渝", g.now.Year(), g.r.IntN(100_000_000))
	}
	return fmt.Sprintf("%s%d", t, 1+g.r.IntN(1000))
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Corrupt returns a copy of a change event (with data) carrying one mistake
// of the kind departments make: a citizen ID or credit code with a wrong
// check character, or a required text field left blank. The door refuses
// it; the generator's state is not touched (it stays what was published).
func (g *Generator) Corrupt(ev *schemas.Event) *schemas.Event {
	if ev == nil || ev.Data == nil {
		return nil
	}
	bad := *ev
	bad.ID = NewUUID()
	bad.Op = schemas.OpUpdate
	bad.Data = make(map[string]any, len(ev.Data))
	for k, v := range ev.Data {
		bad.Data[k] = v
	}
	for _, f := range g.it.Fields {
		s, ok := bad.Data[f.Name].(string)
		if !ok || f.Name == g.it.Key {
			continue
		}
		for _, name := range f.Rules {
			if r, ok := field.Lookup(name); ok && r.Corrupt != nil {
				bad.Data[f.Name] = r.Corrupt(s) // the check character no longer matches
				return &bad
			}
		}
	}
	for _, f := range g.it.Fields {
		if f.Required && f.Type == catalog.TypeString && f.Name != g.it.Key {
			bad.Data[f.Name] = "　 " // full-width and ASCII blanks
			return &bad
		}
	}
	return nil
}

// ClearOptional leaves every optional field of a record's data without a
// value (a record as sparse as the item allows): the tests' null cases.
func ClearOptional(it *catalog.Item, data map[string]any) {
	if data == nil {
		return
	}
	for _, f := range it.Fields {
		if !f.Required {
			data[f.Name] = nil
		}
	}
}
