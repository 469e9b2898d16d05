package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/hamba/avro/v2"
)

// A compiled decoder reads the Avro binary of a writer schema straight into
// the values the rest of Jutong uses (string, int64, float64, bool, *big.Rat,
// time.Time, nil), without reflection or per-record type resolution; it is
// about ten times faster than decoding into maps with hamba/avro (see
// BenchmarkDecode), which matters because every sink decodes every record.
// It covers the shapes Jutong's schemas use; a writer schema with anything
// else is decoded by hamba/avro instead.

// errShape marks a schema the compiled decoder does not cover.
var errShape = errors.New("schemas: shape not covered by the compiled decoder")

type readFn func(r *reader) (any, error)

type reader struct {
	b   []byte
	pos int
}

var errShort = errors.New("schemas: decode: unexpected end of data")

func (r *reader) long() (int64, error) {
	u, n := binary.Uvarint(r.b[r.pos:])
	if n <= 0 {
		return 0, errShort
	}
	r.pos += n
	return int64(u>>1) ^ -int64(u&1), nil
}

func (r *reader) bytes() ([]byte, error) {
	n, err := r.long()
	if err != nil {
		return nil, err
	}
	if n < 0 || int64(len(r.b)-r.pos) < n {
		return nil, errShort
	}
	b := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return b, nil
}

// envelopeDecoder decodes one writer schema's envelope.
type envelopeDecoder struct {
	fields []envField
}

type envField struct {
	name string
	read readFn
}

// compileEnvelope compiles a writer schema of the change-event envelope.
func compileEnvelope(s avro.Schema) (*envelopeDecoder, error) {
	rec, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, errShape
	}
	d := &envelopeDecoder{}
	for _, f := range rec.Fields() {
		read, err := compile(f.Type())
		if err != nil {
			return nil, err
		}
		d.fields = append(d.fields, envField{f.Name(), read})
	}
	return d, nil
}

func (d *envelopeDecoder) decode(payload []byte) (*Event, error) {
	r := &reader{b: payload}
	e := &Event{}
	for _, f := range d.fields {
		v, err := f.read(r)
		if err != nil {
			return nil, fmt.Errorf("schemas: decode field %s: %w", f.name, err)
		}
		switch f.name {
		case "event_id":
			e.ID, _ = v.(string)
		case "op":
			s, _ := v.(string)
			e.Op = Op(s)
		case "key":
			e.Key, _ = v.(string)
		case "data":
			e.Data, _ = v.(map[string]any)
		case "source":
			if m, ok := v.(map[string]any); ok {
				e.Source.Department, _ = m["department"].(string)
				e.Source.System, _ = m["system"].(string)
				e.Source.Adapter, _ = m["adapter"].(string)
			}
		case "event_time":
			e.EventTime, _ = v.(time.Time)
		case "publish_time":
			e.PublishTime, _ = v.(time.Time)
		}
	}
	if r.pos != len(payload) {
		return nil, fmt.Errorf("schemas: decode: %d bytes left over", len(payload)-r.pos)
	}
	if !e.Op.Valid() || e.Key == "" {
		return nil, fmt.Errorf("schemas: decode: event without a valid op and key (op %q)", e.Op)
	}
	return e, nil
}

func compile(s avro.Schema) (readFn, error) {
	switch t := s.(type) {
	case *avro.RecordSchema:
		type field struct {
			name string
			read readFn
		}
		var fields []field
		for _, f := range t.Fields() {
			read, err := compile(f.Type())
			if err != nil {
				return nil, err
			}
			fields = append(fields, field{f.Name(), read})
		}
		return func(r *reader) (any, error) {
			m := make(map[string]any, len(fields))
			for _, f := range fields {
				v, err := f.read(r)
				if err != nil {
					return nil, err
				}
				m[f.name] = v
			}
			return m, nil
		}, nil
	case *avro.EnumSchema:
		symbols := t.Symbols()
		return func(r *reader) (any, error) {
			i, err := r.long()
			if err != nil {
				return nil, err
			}
			if i < 0 || int(i) >= len(symbols) {
				return nil, fmt.Errorf("enum index %d out of range", i)
			}
			return symbols[i], nil
		}, nil
	case *avro.UnionSchema:
		branches := make([]readFn, len(t.Types()))
		for i, b := range t.Types() {
			read, err := compile(b)
			if err != nil {
				return nil, err
			}
			branches[i] = read
		}
		return func(r *reader) (any, error) {
			i, err := r.long()
			if err != nil {
				return nil, err
			}
			if i < 0 || int(i) >= len(branches) {
				return nil, fmt.Errorf("union index %d out of range", i)
			}
			return branches[i](r)
		}, nil
	case *avro.PrimitiveSchema:
		return compilePrimitive(t)
	case *avro.RefSchema:
		return compile(t.Schema())
	case *avro.NullSchema:
		return func(*reader) (any, error) { return nil, nil }, nil
	}
	return nil, fmt.Errorf("%w: %T", errShape, s)
}

func compilePrimitive(t *avro.PrimitiveSchema) (readFn, error) {
	logical := ""
	if l := t.Logical(); l != nil {
		logical = string(l.Type())
	}
	switch t.Type() {
	case avro.Null:
		return func(*reader) (any, error) { return nil, nil }, nil
	case avro.Boolean:
		return func(r *reader) (any, error) {
			if r.pos >= len(r.b) {
				return nil, errShort
			}
			r.pos++
			return r.b[r.pos-1] != 0, nil
		}, nil
	case avro.Int:
		if logical == string(avro.Date) {
			return func(r *reader) (any, error) {
				n, err := r.long()
				if err != nil {
					return nil, err
				}
				return time.Unix(n*86400, 0).UTC(), nil
			}, nil
		}
		return func(r *reader) (any, error) {
			n, err := r.long()
			return int(n), err
		}, nil
	case avro.Long:
		if logical == string(avro.TimestampMillis) {
			return func(r *reader) (any, error) {
				n, err := r.long()
				if err != nil {
					return nil, err
				}
				return time.UnixMilli(n).UTC(), nil
			}, nil
		}
		if logical != "" {
			return nil, errShape
		}
		return func(r *reader) (any, error) { return r.long() }, nil
	case avro.Float:
		return func(r *reader) (any, error) {
			if len(r.b)-r.pos < 4 {
				return nil, errShort
			}
			r.pos += 4
			return math.Float32frombits(binary.LittleEndian.Uint32(r.b[r.pos-4:])), nil
		}, nil
	case avro.Double:
		return func(r *reader) (any, error) {
			if len(r.b)-r.pos < 8 {
				return nil, errShort
			}
			r.pos += 8
			return math.Float64frombits(binary.LittleEndian.Uint64(r.b[r.pos-8:])), nil
		}, nil
	case avro.String:
		return func(r *reader) (any, error) {
			b, err := r.bytes()
			return string(b), err
		}, nil
	case avro.Bytes:
		if logical == string(avro.Decimal) {
			dec, ok := t.Logical().(*avro.DecimalLogicalSchema)
			if !ok {
				return nil, errShape
			}
			scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(dec.Scale())), nil)
			return func(r *reader) (any, error) {
				b, err := r.bytes()
				if err != nil {
					return nil, err
				}
				return new(big.Rat).SetFrac(twosComplement(b), scale), nil
			}, nil
		}
		if logical != "" {
			return nil, errShape
		}
		return func(r *reader) (any, error) {
			b, err := r.bytes()
			return append([]byte(nil), b...), err
		}, nil
	}
	return nil, errShape
}

// twosComplement reads a big-endian two's complement integer.
func twosComplement(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b)*8)))
	}
	return n
}
