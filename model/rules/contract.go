package rules

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules/field"
	"github.com/jutong/jutong/model/upstream"
	"github.com/jutong/jutong/schemas"
)

// Violation is a rejected record: which item, key, field and rule, and why.
type Violation struct {
	Item   string
	Key    string
	Field  string // empty for record-level rules
	Rule   string // e.g. "required", "uscc.checksum", "source.owner"
	Reason string
}

func (v *Violation) Error() string {
	loc := v.Item
	if v.Key != "" {
		loc += " key " + v.Key
	}
	if v.Field != "" {
		loc += " field " + v.Field
	}
	return fmt.Sprintf("rejected %s: rule %s: %s", loc, v.Rule, v.Reason)
}

// Owner refuses a record of item from a department that is not its source
// (one datum, one source).
func Owner(it *catalog.Item, department string) *Violation {
	if department == it.Source {
		return nil
	}
	return &Violation{Item: it.Code, Rule: SourceOwner,
		Reason: fmt.Sprintf("department %q is not the source of this item (%q is): one datum, one source", department, it.Source)}
}

// Size refuses a record of item of n bytes over the item's limit; what says
// what was measured ("the record", "the record encoded", "line 3").
func Size(it *catalog.Item, n int, what string) *Violation {
	if n <= it.RecordLimit() {
		return nil
	}
	return &Violation{Item: it.Code, Rule: RecordSize, Reason: fmt.Sprintf("%s has %d bytes, the item's limit is %d", what, n, it.RecordLimit())}
}

// EventTimeSkew is how far ahead of the bus's clock an event time may be
// (the departments' clocks drift): later ones are refused, so that the
// timeliness scorecard cannot be improved by dating changes ahead.
const EventTimeSkew = 5 * time.Minute

// BackdatedAfter is how old an event time may be at publication before the
// scorecards count the event as backdated (kept, and left out of the
// publish-delay quantiles: docs/operations.md).
const BackdatedAfter = 30 * 24 * time.Hour

// Check checks one event of item published by department. now bounds the
// "not in the future" rules. It returns the first violation found, or nil.
func Check(it *catalog.Item, department string, e *schemas.Event, now time.Time) *Violation {
	bad := func(field, rule, format string, args ...any) *Violation {
		return &Violation{Item: it.Code, Key: e.Key, Field: field, Rule: rule, Reason: fmt.Sprintf(format, args...)}
	}
	if v := checkEnvelope(it, department, e.ID, e.Op, e.Key, e.EventTime, now); v != nil {
		return v
	}
	if e.Op == schemas.OpDelete {
		if e.Data != nil {
			return bad("", DeleteData, "a delete carries no data")
		}
		return checkKeyRules(it, e.Key, now)
	}
	if e.Data == nil {
		return bad("", DataRequired, "%s needs the record's data", e.Op)
	}
	for name := range e.Data {
		if it.Field(name) == nil {
			return bad(name, SchemaUnknownField, "the item has no such field")
		}
	}
	for _, f := range it.Fields {
		v, present := e.Data[f.Name]
		if !present || v == nil {
			if f.Required {
				return bad(f.Name, Required, "%s (%s) is required", f.Name, f.Title)
			}
			continue
		}
		if vi := checkValue(f, v, now); vi != nil {
			vi.Item, vi.Key = it.Code, e.Key
			return vi
		}
	}
	if k, _ := e.Data[it.Key].(string); k != e.Key {
		return bad(it.Key, KeyMatch, "the event key %q differs from the record's %s %q", e.Key, it.Key, k)
	}
	if it.Upstream != nil {
		prov, _ := e.Data[catalog.UpstreamField].(string)
		return checkUpstream(it, e.Key, prov)
	}
	return nil
}

// CheckRow is Check for row i of a batch decoded into columns (the door
// reads a record written with the item's current schema so: no map, no
// boxed value), with the same verdicts, reasons included (TestCheckRow).
// The columns hold the item's fields only: a record with another field is
// never decoded into them.
func CheckRow(it *catalog.Item, department string, c *schemas.Columns, i int, now time.Time) *Violation {
	key := c.Key[i]
	bad := func(field, rule, format string, args ...any) *Violation {
		return &Violation{Item: it.Code, Key: key, Field: field, Rule: rule, Reason: fmt.Sprintf(format, args...)}
	}
	op := c.Op[i]
	if v := checkEnvelope(it, department, c.ID[i], op, key, time.UnixMilli(c.EventTime[i]), now); v != nil {
		return v
	}
	if op == schemas.OpDelete {
		if c.HasData[i] {
			return bad("", DeleteData, "a delete carries no data")
		}
		return checkKeyRules(it, key, now)
	}
	if !c.HasData[i] {
		return bad("", DataRequired, "%s needs the record's data", op)
	}
	keyValue, prov := "", ""
	for j := range c.Fields {
		col := &c.Fields[j]
		f := col.Field
		if col.Null[i] {
			if f.Required {
				return bad(f.Name, Required, "%s (%s) is required", f.Name, f.Title)
			}
			continue
		}
		if vi := checkColumn(f, col, i, now); vi != nil {
			vi.Item, vi.Key = it.Code, key
			return vi
		}
		if f.Name == it.Key && f.Type == catalog.TypeString {
			keyValue = col.Str[i]
		}
		if f.Name == catalog.UpstreamField && f.Type == catalog.TypeString {
			prov = col.Str[i]
		}
	}
	if keyValue != key {
		return bad(it.Key, KeyMatch, "the event key %q differs from the record's %s %q", key, it.Key, keyValue)
	}
	if it.Upstream != nil {
		return checkUpstream(it, key, prov)
	}
	return nil
}

// checkUpstream checks a received record's provenance: of the form the
// bridge writes, and naming the bus and the item the catalog says the item
// is received from. The door takes received items from their bus's bridge
// only (Owner); this keeps that bridge from passing off records of another
// bus or another item as the granted one's.
func checkUpstream(it *catalog.Item, key, prov string) *Violation {
	bad := func(format string, args ...any) *Violation {
		return &Violation{Item: it.Code, Key: key, Field: catalog.UpstreamField, Rule: UpstreamProvenance, Reason: fmt.Sprintf(format, args...)}
	}
	p, err := upstream.Parse(prov)
	switch {
	case err != nil:
		return bad("the provenance %q: %v", prov, err)
	case p.Bus != it.Upstream.Bus:
		return bad("the record claims the bus %q; %s is received from %q only", p.Bus, it.Code, it.Upstream.Bus)
	case p.Item != it.Upstream.Item:
		return bad("the record claims the upstream item %q; %s is %s of %s", p.Item, it.Code, it.Upstream.Item, it.Upstream.Bus)
	}
	return nil
}

// checkEnvelope checks what every event carries besides its data.
func checkEnvelope(it *catalog.Item, department, id string, op schemas.Op, key string, eventTime, now time.Time) *Violation {
	bad := func(field, rule, format string, args ...any) *Violation {
		return &Violation{Item: it.Code, Key: key, Field: field, Rule: rule, Reason: fmt.Sprintf(format, args...)}
	}
	if v := Owner(it, department); v != nil {
		v.Key = key
		return v
	}
	if !op.Valid() {
		return bad("", Op, "operation %q is not CREATE, UPDATE, DELETE or SNAPSHOT", op)
	}
	if strings.TrimSpace(key) == "" {
		return bad(it.Key, KeyRequired, "the business key is empty")
	}
	if vi := checkText(it.Key, key); vi != nil {
		vi.Item, vi.Key = it.Code, key
		return vi
	}
	if id == "" {
		return bad("", EventIDRequired, "the event id is empty")
	}
	if vi := checkText("event_id", id); vi != nil {
		vi.Item, vi.Key = it.Code, key
		return vi
	}
	if len(id) > 128 {
		return bad("event_id", EventIDLength, "the event id has %d bytes, at most 128", len(id))
	}
	if !now.IsZero() && eventTime.After(now.Add(EventTimeSkew)) {
		return bad("event_time", EventTimeFuture, "the event time %s is %s after the bus's clock (%s); at most %s of clock skew is allowed",
			eventTime.UTC().Format(time.RFC3339Nano), eventTime.Sub(now).Round(time.Second), now.UTC().Format(time.RFC3339), EventTimeSkew)
	}
	return nil
}

// checkColumn is checkValue for a present value in a column.
func checkColumn(f *catalog.Field, col *schemas.Column, i int, now time.Time) *Violation {
	switch f.Type {
	case catalog.TypeString:
		return checkString(f, col.Str[i], now)
	case catalog.TypeEnum:
		return checkEnum(f, col.Str[i])
	case catalog.TypeLong:
		return checkLong(f, col.Int[i])
	case catalog.TypeDouble:
		return checkDouble(f, col.Float[i])
	case catalog.TypeDecimal:
		if b := col.Big[i]; b != nil {
			return checkValue(f, new(big.Rat).SetFrac(b, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.Scale)), nil)), now)
		}
		return checkUnscaled(f, col.Int[i])
	case catalog.TypeDate:
		return checkTime(f, time.Unix(col.Int[i]*86400, 0).UTC(), now)
	case catalog.TypeTimestamp:
		return checkTime(f, time.UnixMilli(col.Int[i]).UTC(), now)
	}
	return nil
}

func checkKeyRules(it *catalog.Item, key string, now time.Time) *Violation {
	if vi := checkRules(it.KeyField(), key, now); vi != nil {
		vi.Item, vi.Key = it.Code, key
		return vi
	}
	return nil
}

func checkValue(f *catalog.Field, v any, now time.Time) *Violation {
	typeErr := func(want string) *Violation {
		return &Violation{Field: f.Name, Rule: SchemaType, Reason: fmt.Sprintf("want %s, got %T", want, v)}
	}
	switch f.Type {
	case catalog.TypeString:
		s, ok := v.(string)
		if !ok {
			return typeErr("a string")
		}
		return checkString(f, s, now)
	case catalog.TypeEnum:
		s, ok := v.(string)
		if !ok {
			return typeErr("a string")
		}
		return checkEnum(f, s)
	case catalog.TypeLong:
		n, ok := v.(int64)
		if !ok {
			return typeErr("an int64")
		}
		return checkLong(f, n)
	case catalog.TypeDouble:
		x, ok := v.(float64)
		if !ok {
			return typeErr("a float64")
		}
		return checkDouble(f, x)
	case catalog.TypeBoolean:
		if _, ok := v.(bool); !ok {
			return typeErr("a bool")
		}
	case catalog.TypeDecimal:
		r, ok := v.(*big.Rat)
		if !ok || r == nil {
			return typeErr("a *big.Rat")
		}
		if vi := checkDecimal(f, r); vi != nil {
			return vi
		}
		if f.Min == nil && f.Max == nil {
			return nil
		}
		if u, ok := unscaled(f, r); ok {
			// Compare in units of the scale when the bounds are whole units.
			if lo, hi, ok := scaledBounds(f); ok {
				x, _ := r.Float64()
				return checkRange(f, x, true, nil, u, lo, hi)
			}
		}
		x, exact := r.Float64()
		return checkRange(f, x, exact, func() *big.Rat { return r }, 0, nil, nil)
	case catalog.TypeDate, catalog.TypeTimestamp:
		t, ok := v.(time.Time)
		if !ok {
			return typeErr("a time.Time")
		}
		return checkTime(f, t, now)
	}
	return nil
}

func checkString(f *catalog.Field, s string, now time.Time) *Violation {
	if vi := checkText(f.Name, s); vi != nil {
		return vi
	}
	if strings.TrimSpace(s) == "" {
		return &Violation{Field: f.Name, Rule: Blank, Reason: fmt.Sprintf("%s (%s) is empty or blank", f.Name, f.Title)}
	}
	return checkRules(f, s, now)
}

func checkEnum(f *catalog.Field, s string) *Violation {
	for _, sym := range f.Symbols {
		if s == sym {
			return nil
		}
	}
	return &Violation{Field: f.Name, Rule: SchemaEnum, Reason: fmt.Sprintf("%q is not one of %s", s, strings.Join(f.Symbols, ", "))}
}

func checkLong(f *catalog.Field, n int64) *Violation {
	if f.Min == nil && f.Max == nil {
		return nil
	}
	exact := n > -1<<53 && n < 1<<53
	return checkRange(f, float64(n), exact, func() *big.Rat { return new(big.Rat).SetInt64(n) }, 0, nil, nil)
}

func checkDouble(f *catalog.Field, x float64) *Violation {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return &Violation{Field: f.Name, Rule: SchemaType, Reason: "NaN and infinities are not values"}
	}
	return checkRange(f, x, true, nil, 0, nil, nil)
}

func checkTime(f *catalog.Field, t, now time.Time) *Violation {
	for _, name := range f.Rules {
		if r, ok := field.Lookup(name); ok && r.Kind == field.Time {
			if rule, why, ok := r.CheckTime(t, now); !ok {
				return &Violation{Field: f.Name, Rule: rule, Reason: why}
			}
		}
	}
	return nil
}

// checkUnscaled is checkValue for a decimal given unscaled at the field's
// scale (an Avro decimal has exactly its schema's scale): the precision,
// then the range, as checkDecimal and checkValue would on the same value.
func checkUnscaled(f *catalog.Field, u int64) *Violation {
	if f.Precision > 18 || f.Scale > 18 {
		return checkValue(f, new(big.Rat).SetFrac(big.NewInt(u), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.Scale)), nil)), time.Time{})
	}
	if absInt(u) >= pow10[f.Precision] {
		r := new(big.Rat).SetFrac64(u, pow10[f.Scale])
		return &Violation{Field: f.Name, Rule: DecimalPrecision, Reason: fmt.Sprintf("%s has more than %d digits", r.FloatString(f.Scale), f.Precision)}
	}
	if f.Min == nil && f.Max == nil {
		return nil
	}
	r := func() *big.Rat { return new(big.Rat).SetFrac64(u, pow10[f.Scale]) }
	if lo, hi, ok := scaledBounds(f); ok {
		x, _ := r().Float64()
		return checkRange(f, x, true, nil, u, lo, hi)
	}
	x, exact := r().Float64()
	return checkRange(f, x, exact, r, 0, nil, nil)
}

// checkDecimal refuses values that the column cannot hold exactly: more
// fractional digits than the scale (Avro would silently truncate them) or
// more integer digits than precision-scale.
func checkDecimal(f *catalog.Field, r *big.Rat) *Violation {
	if f.Precision <= 18 && r.Num().IsInt64() && r.Denom().IsInt64() {
		// Fast path without big arithmetic: unscaled = num * 10^scale / den.
		num, den := r.Num().Int64(), r.Denom().Int64()
		hi, lo := bits.Mul64(uint64(absInt(num)), uint64(pow10[f.Scale]))
		if hi == 0 && lo <= math.MaxInt64 {
			if int64(lo)%den != 0 {
				return &Violation{Field: f.Name, Rule: DecimalScale, Reason: fmt.Sprintf("%s has more than %d decimal places", r.RatString(), f.Scale)}
			}
			if int64(lo)/den >= pow10[f.Precision] {
				return &Violation{Field: f.Name, Rule: DecimalPrecision, Reason: fmt.Sprintf("%s has more than %d digits", r.FloatString(f.Scale), f.Precision)}
			}
			return nil
		}
	}
	scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.Scale)), nil)))
	if !scaled.IsInt() {
		return &Violation{Field: f.Name, Rule: DecimalScale, Reason: fmt.Sprintf("%s has more than %d decimal places", r.RatString(), f.Scale)}
	}
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.Precision)), nil)
	if new(big.Int).Abs(scaled.Num()).Cmp(limit) >= 0 {
		return &Violation{Field: f.Name, Rule: DecimalPrecision, Reason: fmt.Sprintf("%s has more than %d digits", r.FloatString(f.Scale), f.Precision)}
	}
	return nil
}

var pow10 = [19]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

func absInt(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// checkRange applies the field's inclusive min and max. A decimal compares
// as an integer count of its scale's units (u against lo, hi) when it can;
// other values compare as float64 when that is exact, else as rationals.
func checkRange(f *catalog.Field, x float64, exact bool, r func() *big.Rat, u int64, lo, hi *int64) *Violation {
	below := func(bound float64) bool {
		switch {
		case lo != nil:
			return u < *lo
		case exact:
			return x < bound
		}
		return r().Cmp(new(big.Rat).SetFloat64(bound)) < 0
	}
	above := func(bound float64) bool {
		switch {
		case hi != nil:
			return u > *hi
		case exact:
			return x > bound
		}
		return r().Cmp(new(big.Rat).SetFloat64(bound)) > 0
	}
	if f.Min != nil && below(*f.Min) {
		return &Violation{Field: f.Name, Rule: RangeMin, Reason: fmt.Sprintf("%v is below the minimum %v", x, *f.Min)}
	}
	if f.Max != nil && above(*f.Max) {
		return &Violation{Field: f.Name, Rule: RangeMax, Reason: fmt.Sprintf("%v is above the maximum %v", x, *f.Max)}
	}
	return nil
}

// unscaled returns r in units of the field's scale, when it fits an int64.
func unscaled(f *catalog.Field, r *big.Rat) (int64, bool) {
	if f.Scale > 18 || !r.Num().IsInt64() || !r.Denom().IsInt64() {
		return 0, false
	}
	num, den := r.Num().Int64(), r.Denom().Int64()
	hi, lo := bits.Mul64(uint64(absInt(num)), uint64(pow10[f.Scale]))
	if hi != 0 || lo > math.MaxInt64 || int64(lo)%den != 0 {
		return 0, false
	}
	u := int64(lo) / den
	if num < 0 {
		u = -u
	}
	return u, true
}

// scaledBounds returns min and max in units of the scale (a nil bound is
// absent), when they are whole units that float64 holds exactly.
func scaledBounds(f *catalog.Field) (lo, hi *int64, ok bool) {
	conv := func(b *float64) (*int64, bool) {
		if b == nil {
			return nil, true
		}
		if f.Scale > 15 {
			return nil, false
		}
		v := *b * float64(pow10[f.Scale])
		if v != math.Trunc(v) || math.Abs(v) >= 1<<53 {
			return nil, false
		}
		n := int64(v)
		return &n, true
	}
	lo, okLo := conv(f.Min)
	hi, okHi := conv(f.Max)
	if !okLo || !okHi || (lo == nil && hi == nil) {
		return nil, nil, false
	}
	return lo, hi, true
}

// checkText refuses text that a database cannot keep as it was sent: NUL
// characters (PostgreSQL refuses them) and bytes that are not UTF-8 (which
// would otherwise be rewritten somewhere on the way). Never silently fixed.
func checkText(field, s string) *Violation {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return &Violation{Field: field, Rule: TextNUL, Reason: fmt.Sprintf("%s holds a NUL character at byte %d", field, i)}
	}
	if !utf8.ValidString(s) {
		return &Violation{Field: field, Rule: TextUTF8, Reason: fmt.Sprintf("%s is not valid UTF-8 at byte %d", field, invalidAt([]byte(s)))}
	}
	return nil
}

// invalidAt is the offset of the first byte of b that is not UTF-8.
func invalidAt(b []byte) int {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			break
		}
		i += n
	}
	return i
}

// checkRules applies the field's text rules (package field).
func checkRules(f *catalog.Field, s string, now time.Time) *Violation {
	for _, name := range f.Rules {
		if r, ok := field.Lookup(name); ok && r.Kind == field.Text {
			if rule, why, ok := r.CheckText(s, now); !ok {
				return &Violation{Field: f.Name, Rule: rule, Reason: why}
			}
		}
	}
	return nil
}
