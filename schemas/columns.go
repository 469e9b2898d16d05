package schemas

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"sync"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/jutong/jutong/model/catalog"
)

// Columns is a batch of one item's change events decoded field by field into
// typed vectors: one slice per envelope field and per catalog field, no map
// and no boxed value per record. The sinks write the vectors as they are
// (ClickHouse's columnar Append, PostgreSQL's binary COPY) and render a row's
// JSON from them. Strings are substrings of one string per record (one
// allocation per record, whatever its fields).
//
// Row i of the batch is a delete when HasData[i] is false; then every
// field's Null[i] is true.
type Columns struct {
	Item                                 *catalog.Item
	N                                    int
	ID, Key, Department, System, Adapter []string
	Op                                   []Op
	EventTime, PublishTime               []int64 // Unix milliseconds
	HasData                              []bool
	Fields                               []Column // one per Item.Fields, in catalog order
}

// Column holds one catalog field of a batch.
type Column struct {
	Field *catalog.Field
	Null  []bool // absent (an optional field without value, or a delete)
	// Str holds strings and enum symbols.
	Str []string
	// Int holds longs, booleans (0, 1), dates (days since 1970-01-01),
	// timestamps (Unix milliseconds) and decimals (the unscaled value at the
	// field's scale, unless Big holds the row).
	Int []int64
	// Float holds doubles.
	Float []float64
	// Big holds, by row, the unscaled decimals that do not fit an int64.
	Big map[int]*big.Int
}

// NewColumns returns an empty batch of item it.
func NewColumns(it *catalog.Item) *Columns {
	c := &Columns{Item: it, Fields: make([]Column, len(it.Fields))}
	for i, f := range it.Fields {
		c.Fields[i].Field = f
	}
	return c
}

// ColumnSet holds a batch's Columns, one per item, kept from batch to
// batch (their memory reused).
type ColumnSet map[*catalog.Item]*Columns

// Of is the item's Columns, made on first use.
func (cs ColumnSet) Of(it *catalog.Item) *Columns {
	c := cs[it]
	if c == nil {
		c = NewColumns(it)
		cs[it] = c
	}
	return c
}

// Reset empties every item's Columns for the next batch.
func (cs ColumnSet) Reset() {
	for _, c := range cs {
		c.Reset()
	}
}

// Reset empties the batch, keeping its memory.
func (c *Columns) Reset() {
	c.truncate(0)
}

// truncate drops the rows from n on (a record that failed half-way).
func (c *Columns) truncate(n int) {
	c.N = n
	c.ID, c.Key, c.Department, c.System, c.Adapter = c.ID[:n], c.Key[:n], c.Department[:n], c.System[:n], c.Adapter[:n]
	c.Op, c.EventTime, c.PublishTime, c.HasData = c.Op[:n], c.EventTime[:n], c.PublishTime[:n], c.HasData[:n]
	for i := range c.Fields {
		col := &c.Fields[i]
		col.Null = col.Null[:n]
		switch kindOf(col.Field.Type) {
		case kindStr:
			col.Str = col.Str[:n]
		case kindFloat:
			col.Float = col.Float[:n]
		default:
			col.Int = col.Int[:n]
		}
		for r := range col.Big {
			if r >= n {
				delete(col.Big, r)
			}
		}
	}
}

type colKind int

const (
	kindStr colKind = iota
	kindInt
	kindFloat
)

func kindOf(t catalog.FieldType) colKind {
	switch t {
	case catalog.TypeString, catalog.TypeEnum:
		return kindStr
	case catalog.TypeDouble:
		return kindFloat
	}
	return kindInt
}

// Value is field j of row i as the map decoder gives it (Event.Data):
// string, int64, float64, bool, *big.Rat, time.Time, or nil.
func (c *Columns) Value(j, i int) any {
	col := &c.Fields[j]
	if col.Null[i] {
		return nil
	}
	switch col.Field.Type {
	case catalog.TypeString, catalog.TypeEnum:
		return col.Str[i]
	case catalog.TypeDouble:
		return col.Float[i]
	case catalog.TypeLong:
		return col.Int[i]
	case catalog.TypeBoolean:
		return col.Int[i] != 0
	case catalog.TypeDate:
		return time.Unix(col.Int[i]*86400, 0).UTC()
	case catalog.TypeTimestamp:
		return time.UnixMilli(col.Int[i]).UTC()
	case catalog.TypeDecimal:
		return new(big.Rat).SetFrac(col.Unscaled(i), pow10Big(col.Field.Scale))
	}
	return nil
}

// Unscaled is a decimal field's unscaled value at row i.
func (col *Column) Unscaled(i int) *big.Int {
	if b := col.Big[i]; b != nil {
		return b
	}
	return big.NewInt(col.Int[i])
}

func pow10Big(scale int) *big.Int {
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)
}

// Envelope is row i's event without its data (Data nil): what a sink needs
// besides the columns.
func (c *Columns) Envelope(i int) *Event {
	e := &Event{}
	c.EnvelopeInto(e, i)
	return e
}

// EnvelopeInto sets e to row i's envelope (Data nil), for a caller that
// allocates a batch's events at once.
func (c *Columns) EnvelopeInto(e *Event, i int) {
	*e = Event{ID: c.ID[i], Op: c.Op[i], Key: c.Key[i],
		Source:    Source{Department: c.Department[i], System: c.System[i], Adapter: c.Adapter[i]},
		EventTime: time.UnixMilli(c.EventTime[i]).UTC(), PublishTime: time.UnixMilli(c.PublishTime[i]).UTC()}
}

// Event is row i as a whole event, as the map decoder gives it.
func (c *Columns) Event(i int) *Event {
	e := c.Envelope(i)
	if c.HasData[i] {
		e.Data = make(map[string]any, len(c.Fields))
		for j := range c.Fields {
			e.Data[c.Fields[j].Field.Name] = c.Value(j, i)
		}
	}
	return e
}

// AppendEvent adds a decoded event as a row (for writer schemas the column
// decoder does not cover, and for tests). Values of the wrong type are an
// error naming the field.
func (c *Columns) AppendEvent(e *Event) error {
	n := c.N
	c.appendEnvelope(e.ID, e.Op, e.Key, e.Source, e.EventTime.UnixMilli(), e.PublishTime.UnixMilli(), e.Data != nil)
	for j := range c.Fields {
		col := &c.Fields[j]
		var v any
		if e.Data != nil {
			v = e.Data[col.Field.Name]
		}
		if err := col.appendValue(v, n); err != nil {
			c.truncate(n)
			return fmt.Errorf("schemas: %s field %s: %w", c.Item.Code, col.Field.Name, err)
		}
	}
	c.N++
	return nil
}

func (c *Columns) appendEnvelope(id string, op Op, key string, src Source, eventMs, publishMs int64, hasData bool) {
	c.ID, c.Key, c.Op = append(c.ID, id), append(c.Key, key), append(c.Op, op)
	c.Department, c.System, c.Adapter = append(c.Department, src.Department), append(c.System, src.System), append(c.Adapter, src.Adapter)
	c.EventTime, c.PublishTime, c.HasData = append(c.EventTime, eventMs), append(c.PublishTime, publishMs), append(c.HasData, hasData)
}

// appendNull adds an absent value.
func (col *Column) appendNull() {
	col.Null = append(col.Null, true)
	switch kindOf(col.Field.Type) {
	case kindStr:
		col.Str = append(col.Str, "")
	case kindFloat:
		col.Float = append(col.Float, 0)
	default:
		col.Int = append(col.Int, 0)
	}
}

func (col *Column) appendValue(v any, row int) error {
	if v == nil {
		col.appendNull()
		return nil
	}
	f := col.Field
	switch x := v.(type) {
	case string:
		if kindOf(f.Type) == kindStr {
			col.Null, col.Str = append(col.Null, false), append(col.Str, x)
			return nil
		}
	case float64:
		if f.Type == catalog.TypeDouble {
			col.Null, col.Float = append(col.Null, false), append(col.Float, x)
			return nil
		}
	case int64:
		if f.Type == catalog.TypeLong {
			col.Null, col.Int = append(col.Null, false), append(col.Int, x)
			return nil
		}
	case bool:
		if f.Type == catalog.TypeBoolean {
			n := int64(0)
			if x {
				n = 1
			}
			col.Null, col.Int = append(col.Null, false), append(col.Int, n)
			return nil
		}
	case time.Time:
		switch f.Type {
		case catalog.TypeDate:
			col.Null, col.Int = append(col.Null, false), append(col.Int, x.Unix()/86400)
			return nil
		case catalog.TypeTimestamp:
			col.Null, col.Int = append(col.Null, false), append(col.Int, x.UnixMilli())
			return nil
		}
	case *big.Rat:
		if f.Type == catalog.TypeDecimal && x != nil {
			u := new(big.Int).Mul(x.Num(), pow10Big(f.Scale))
			u.Quo(u, x.Denom())
			col.Null = append(col.Null, false)
			if u.IsInt64() {
				col.Int = append(col.Int, u.Int64())
			} else {
				col.Int = append(col.Int, 0)
				if col.Big == nil {
					col.Big = map[int]*big.Int{}
				}
				col.Big[row] = u
			}
			return nil
		}
	}
	return fmt.Errorf("cannot hold %T as %s", v, f.Type)
}

// A column decoder reads the Avro binary of one writer schema of an item's
// envelope straight into Columns. It is compiled in two steps: the writer
// schema into a plan (what each position holds, kept with the writer
// schema), the plan against a catalog item (which column each data field
// fills) when a batch of that item is decoded.

// colPlan is a writer schema's envelope, position by position.
type colPlan struct {
	envelope []envSlot
	data     []dataSlot // the Value record's fields, in writer order

	mu    sync.Mutex
	bound map[*catalog.Item]*colDecoder // nil: the item's fields differ in type
}

// decoderFor is the plan bound to it (nil when the types differ), compiled once.
func (p *colPlan) decoderFor(it *catalog.Item) *colDecoder {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.bound[it]; ok {
		return d
	}
	d, err := p.bind(it)
	if err != nil {
		d = nil
	}
	if p.bound == nil {
		p.bound = map[*catalog.Item]*colDecoder{}
	}
	p.bound[it] = d
	return d
}

type envSlot struct {
	name    string
	symbols []string // op
	source  []string // the Source record's field names, in writer order
}

type dataSlot struct {
	name     string
	nullable bool // ["null", T]
	kind     catalog.FieldType
	symbols  []string // enum
	scale    int      // decimal
}

// planEnvelope reads a writer schema into a plan; errShape for what it does
// not cover (the map decoder reads those).
func planEnvelope(s avro.Schema) (*colPlan, error) {
	rec, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, errShape
	}
	p := &colPlan{}
	seen := map[string]bool{}
	for _, f := range rec.Fields() {
		slot := envSlot{name: f.Name()}
		seen[f.Name()] = true
		t := f.Type()
		switch f.Name() {
		case "event_id", "key":
			if !isPrimitive(t, avro.String) {
				return nil, errShape
			}
		case "op":
			e, ok := t.(*avro.EnumSchema)
			if !ok {
				return nil, errShape
			}
			slot.symbols = e.Symbols()
		case "data":
			u, ok := t.(*avro.UnionSchema)
			if !ok || len(u.Types()) != 2 || u.Types()[0].Type() != avro.Null {
				return nil, errShape
			}
			vr, ok := deref(u.Types()[1]).(*avro.RecordSchema)
			if !ok {
				return nil, errShape
			}
			for _, df := range vr.Fields() {
				ds, err := planData(df)
				if err != nil {
					return nil, err
				}
				p.data = append(p.data, ds)
			}
		case "source":
			sr, ok := deref(t).(*avro.RecordSchema)
			if !ok {
				return nil, errShape
			}
			for _, sf := range sr.Fields() {
				if !isPrimitive(sf.Type(), avro.String) {
					return nil, errShape
				}
				slot.source = append(slot.source, sf.Name())
			}
		case "event_time", "publish_time":
			pr, ok := t.(*avro.PrimitiveSchema)
			if !ok || pr.Type() != avro.Long || pr.Logical() == nil || pr.Logical().Type() != avro.TimestampMillis {
				return nil, errShape
			}
		default:
			return nil, errShape
		}
		p.envelope = append(p.envelope, slot)
	}
	for _, name := range []string{"event_id", "op", "key", "data", "source", "event_time", "publish_time"} {
		if !seen[name] {
			return nil, errShape
		}
	}
	return p, nil
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func isPrimitive(s avro.Schema, t avro.Type) bool {
	p, ok := s.(*avro.PrimitiveSchema)
	return ok && p.Type() == t && (t == avro.String || p.Logical() == nil) // a string may say uuid
}

func planData(f *avro.Field) (dataSlot, error) {
	ds := dataSlot{name: f.Name()}
	t := deref(f.Type())
	if u, ok := t.(*avro.UnionSchema); ok {
		if len(u.Types()) != 2 || u.Types()[0].Type() != avro.Null {
			return ds, errShape
		}
		ds.nullable, t = true, deref(u.Types()[1])
	}
	switch x := t.(type) {
	case *avro.EnumSchema:
		ds.kind, ds.symbols = catalog.TypeEnum, x.Symbols()
		return ds, nil
	case *avro.PrimitiveSchema:
		var logical avro.LogicalType
		if x.Logical() != nil {
			logical = x.Logical().Type()
		}
		switch {
		case x.Type() == avro.String:
			ds.kind = catalog.TypeString
		case x.Type() == avro.Long && logical == "":
			ds.kind = catalog.TypeLong
		case x.Type() == avro.Long && logical == avro.TimestampMillis:
			ds.kind = catalog.TypeTimestamp
		case x.Type() == avro.Int && logical == avro.Date:
			ds.kind = catalog.TypeDate
		case x.Type() == avro.Double && logical == "":
			ds.kind = catalog.TypeDouble
		case x.Type() == avro.Boolean:
			ds.kind = catalog.TypeBoolean
		case x.Type() == avro.Bytes && logical == avro.Decimal:
			dec, ok := x.Logical().(*avro.DecimalLogicalSchema)
			if !ok {
				return ds, errShape
			}
			ds.kind, ds.scale = catalog.TypeDecimal, dec.Scale()
		default:
			return ds, errShape
		}
		return ds, nil
	}
	return ds, errShape
}

// colDecoder is a plan bound to an item: where each data field goes.
type colDecoder struct {
	plan  *colPlan
	item  *catalog.Item
	dest  []int  // per data slot: the column, or -1 (a field the item no longer has)
	dests []bool // per column: filled by some data slot
}

// bind compiles the plan for it; errShape when a field's type differs from
// the catalog's (the map decoder then reads the record, and the sink's
// type checks refuse what does not fit).
func (p *colPlan) bind(it *catalog.Item) (*colDecoder, error) {
	d := &colDecoder{plan: p, item: it, dest: make([]int, len(p.data)), dests: make([]bool, len(it.Fields))}
	idx := make(map[string]int, len(it.Fields))
	for i, f := range it.Fields {
		idx[f.Name] = i
	}
	for k, ds := range p.data {
		j, ok := idx[ds.name]
		if !ok {
			d.dest[k] = -1
			continue
		}
		f := it.Fields[j]
		if f.Type != ds.kind || (f.Type == catalog.TypeDecimal && f.Scale != ds.scale) {
			return nil, errShape
		}
		d.dest[k], d.dests[j] = j, true
	}
	return d, nil
}

// decode appends the record payload (without its framing) as a row of c.
func (d *colDecoder) decode(c *Columns, payload []byte) (err error) {
	n := c.N
	defer func() {
		if err != nil {
			c.truncate(n)
		}
	}()
	str := string(payload) // every string of the record is a substring of this one
	r := &reader{b: payload}
	readStr := func() (string, error) {
		l, err := r.long()
		if err != nil {
			return "", err
		}
		if l < 0 || int64(len(payload)-r.pos) < l {
			return "", errShort
		}
		s := str[r.pos : r.pos+int(l)]
		r.pos += int(l)
		return s, nil
	}
	var id, key string
	var op Op
	var src Source
	var evMs, pubMs int64
	hasData := false
	for _, slot := range d.plan.envelope {
		switch slot.name {
		case "event_id":
			id, err = readStr()
		case "key":
			key, err = readStr()
		case "op":
			var i int64
			if i, err = r.long(); err == nil {
				if i < 0 || int(i) >= len(slot.symbols) {
					return fmt.Errorf("schemas: decode field op: enum index %d out of range", i)
				}
				op = Op(slot.symbols[i])
			}
		case "source":
			for _, name := range slot.source {
				var s string
				if s, err = readStr(); err != nil {
					break
				}
				switch name {
				case "department":
					src.Department = s
				case "system":
					src.System = s
				case "adapter":
					src.Adapter = s
				}
			}
		case "event_time":
			evMs, err = r.long()
		case "publish_time":
			pubMs, err = r.long()
		case "data":
			var branch int64
			if branch, err = r.long(); err != nil {
				break
			}
			switch branch {
			case 0:
			case 1:
				hasData = true
				err = d.decodeData(c, r, readStr, n)
			default:
				return fmt.Errorf("schemas: decode field data: union index %d out of range", branch)
			}
		}
		if err != nil {
			return fmt.Errorf("schemas: decode field %s: %w", slot.name, err)
		}
	}
	if r.pos != len(payload) {
		return fmt.Errorf("schemas: decode: %d bytes left over", len(payload)-r.pos)
	}
	if !op.Valid() || key == "" {
		return fmt.Errorf("schemas: decode: event without a valid op and key (op %q)", op)
	}
	// The fields the writer schema does not have, and every field of a
	// delete, are absent.
	for j := range c.Fields {
		if !hasData || !d.dests[j] {
			c.Fields[j].appendNull()
		}
	}
	c.appendEnvelope(id, op, key, src, evMs, pubMs, hasData)
	c.N++
	return nil
}

var errUnion = errors.New("union index out of range")

func (d *colDecoder) decodeData(c *Columns, r *reader, readStr func() (string, error), row int) error {
	for k, ds := range d.plan.data {
		var col *Column
		if j := d.dest[k]; j >= 0 {
			col = &c.Fields[j]
		}
		if ds.nullable {
			b, err := r.long()
			if err != nil {
				return err
			}
			if b == 0 {
				if col != nil {
					col.appendNull()
				}
				continue
			}
			if b != 1 {
				return fmt.Errorf("%s: %w", ds.name, errUnion)
			}
		}
		if err := readData(r, readStr, ds, col, row); err != nil {
			return fmt.Errorf("%s: %w", ds.name, err)
		}
	}
	return nil
}

// readData reads one present value into col (nil: read and dropped).
func readData(r *reader, readStr func() (string, error), ds dataSlot, col *Column, row int) error {
	switch ds.kind {
	case catalog.TypeString:
		s, err := readStr()
		if err == nil && col != nil {
			col.Null, col.Str = append(col.Null, false), append(col.Str, s)
		}
		return err
	case catalog.TypeEnum:
		i, err := r.long()
		if err != nil {
			return err
		}
		if i < 0 || int(i) >= len(ds.symbols) {
			return fmt.Errorf("enum index %d out of range", i)
		}
		if col != nil {
			col.Null, col.Str = append(col.Null, false), append(col.Str, ds.symbols[i])
		}
		return nil
	case catalog.TypeLong, catalog.TypeTimestamp, catalog.TypeDate:
		n, err := r.long()
		if err == nil && col != nil {
			col.Null, col.Int = append(col.Null, false), append(col.Int, n)
		}
		return err
	case catalog.TypeBoolean:
		if r.pos >= len(r.b) {
			return errShort
		}
		v := int64(0)
		if r.b[r.pos] != 0 {
			v = 1
		}
		r.pos++
		if col != nil {
			col.Null, col.Int = append(col.Null, false), append(col.Int, v)
		}
		return nil
	case catalog.TypeDouble:
		if len(r.b)-r.pos < 8 {
			return errShort
		}
		x := math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.pos:]))
		r.pos += 8
		if col != nil {
			col.Null, col.Float = append(col.Null, false), append(col.Float, x)
		}
		return nil
	case catalog.TypeDecimal:
		b, err := r.bytes()
		if err != nil || col == nil {
			return err
		}
		col.Null = append(col.Null, false)
		if len(b) <= 8 {
			var u int64
			if len(b) > 0 && b[0]&0x80 != 0 {
				u = -1
			}
			for _, x := range b {
				u = u<<8 | int64(x)
			}
			col.Int = append(col.Int, u)
			return nil
		}
		col.Int = append(col.Int, 0)
		if col.Big == nil {
			col.Big = map[int]*big.Int{}
		}
		col.Big[row] = twosComplement(b)
		return nil
	}
	return errShape
}

// AppendJSON appends row i's data as AppendJSONValues renders it, byte for
// byte, from the columns (nothing when the row is a delete).
func (c *Columns) AppendJSON(buf []byte, i int) ([]byte, error) {
	if !c.HasData[i] {
		return buf, nil
	}
	buf = append(buf, '{')
	for j := range c.Fields {
		col := &c.Fields[j]
		f := col.Field
		if j > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, f.Name)
		buf = append(buf, ':')
		if col.Null[i] {
			buf = append(buf, "null"...)
			continue
		}
		switch f.Type {
		case catalog.TypeString, catalog.TypeEnum:
			buf = appendJSONString(buf, col.Str[i])
		case catalog.TypeLong:
			buf = strconv.AppendInt(buf, col.Int[i], 10)
		case catalog.TypeBoolean:
			buf = strconv.AppendBool(buf, col.Int[i] != 0)
		case catalog.TypeDecimal:
			buf = append(buf, '"')
			buf = col.AppendDecimal(buf, i)
			buf = append(buf, '"')
		case catalog.TypeDate:
			buf = append(buf, '"')
			buf = time.Unix(col.Int[i]*86400, 0).UTC().AppendFormat(buf, time.DateOnly)
			buf = append(buf, '"')
		case catalog.TypeTimestamp:
			buf = append(buf, '"')
			buf = time.UnixMilli(col.Int[i]).UTC().AppendFormat(buf, "2006-01-02T15:04:05.000Z")
			buf = append(buf, '"')
		case catalog.TypeDouble:
			v, err := json.Marshal(col.Float[i]) // exactly as encoding/json
			if err != nil {
				return nil, fmt.Errorf("schemas: %s field %s: %w", c.Item.Code, f.Name, err)
			}
			buf = append(buf, v...)
		}
	}
	return append(buf, '}'), nil
}

// AppendDecimal appends a decimal field's row i in plain notation at the
// field's scale (what big.Rat's FloatString(scale) writes).
func (col *Column) AppendDecimal(buf []byte, i int) []byte {
	scale := col.Field.Scale
	if b := col.Big[i]; b != nil {
		return append(buf, new(big.Rat).SetFrac(b, pow10Big(scale)).FloatString(scale)...)
	}
	u := col.Int[i]
	var mag uint64
	if u < 0 {
		buf = append(buf, '-')
		mag = uint64(-u) // also right for math.MinInt64
	} else {
		mag = uint64(u)
	}
	var digits [24]byte
	d := strconv.AppendUint(digits[:0], mag, 10)
	if scale == 0 {
		return append(buf, d...)
	}
	if len(d) <= scale {
		buf = append(buf, '0', '.')
		for k := len(d); k < scale; k++ {
			buf = append(buf, '0')
		}
		return append(buf, d...)
	}
	buf = append(buf, d[:len(d)-scale]...)
	buf = append(buf, '.')
	return append(buf, d[len(d)-scale:]...)
}
