package schemas

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/model/catalog"
)

// RecordError marks a record that can never be decoded (not framed, unknown
// schema id, corrupt Avro): retrying will not help, the record is bad.
type RecordError struct{ Err error }

func (e *RecordError) Error() string { return e.Err.Error() }
func (e *RecordError) Unwrap() error { return e.Err }

// Decoder decodes Confluent-framed change events, fetching writer schemas
// from a registry by id and caching them.
type Decoder struct {
	reg *sr.Client
	mu  sync.Mutex
	ids map[int]writerSchema
}

// writerSchema is a registered schema with its compiled decoder (nil when
// the compiled decoder does not cover it: hamba/avro decodes it then).
type writerSchema struct {
	avro     avro.Schema
	compiled *envelopeDecoder
	columns  *colPlan // nil: the column decoder does not cover it
	name     string   // the envelope's full name: jutong.<item code>.Envelope
}

// NewDecoder returns a decoder using the registry client reg.
func NewDecoder(reg *sr.Client) *Decoder { return &Decoder{reg: reg, ids: map[int]writerSchema{}} }

// Decode decodes one record value. A *RecordError means the record is bad;
// any other error (registry unreachable) is worth retrying.
func (d *Decoder) Decode(ctx context.Context, value []byte) (*Event, error) {
	id, payload, err := Unframe(value)
	if err != nil {
		return nil, &RecordError{err}
	}
	s, err := d.schema(ctx, id)
	if err != nil {
		return nil, err
	}
	var ev *Event
	if s.compiled != nil {
		ev, err = s.compiled.decode(payload)
	} else {
		ev, err = Decode(s.avro, payload)
	}
	if err != nil {
		return nil, &RecordError{err}
	}
	return ev, nil
}

// DecodeItem decodes a record that must be a change event of item it: a
// value written with another item's schema is a *RecordError, as bad bytes
// are. The door uses it on the inboxes, where a department chooses the
// schema id.
func (d *Decoder) DecodeItem(ctx context.Context, it *catalog.Item, value []byte) (*Event, error) {
	id, _, err := Unframe(value)
	if err != nil {
		return nil, &RecordError{err}
	}
	s, err := d.schema(ctx, id)
	if err != nil {
		return nil, err
	}
	if want := envelopeNamespace(it) + ".Envelope"; s.name != want {
		return nil, &RecordError{fmt.Errorf("schema id %d is %s, not a change event of %s", id, s.name, it.Code)}
	}
	return d.Decode(ctx, value)
}

// DecodeColumns appends a record that must be a change event of the item
// of c as a row of c, straight from its Avro bytes when the column decoder
// covers its writer schema (else through the map decoder). Errors as
// DecodeItem's; on an error c is unchanged.
func (d *Decoder) DecodeColumns(ctx context.Context, c *Columns, value []byte) error {
	id, payload, err := Unframe(value)
	if err != nil {
		return &RecordError{err}
	}
	s, err := d.schema(ctx, id)
	if err != nil {
		return err
	}
	if want := envelopeNamespace(c.Item) + ".Envelope"; s.name != want {
		return &RecordError{fmt.Errorf("schema id %d is %s, not a change event of %s", id, s.name, c.Item.Code)}
	}
	if s.columns != nil {
		if cd := s.columns.decoderFor(c.Item); cd != nil {
			if err := cd.decode(c, payload); err != nil {
				return &RecordError{err}
			}
			return nil
		}
	}
	ev, err := d.Decode(ctx, value)
	if err != nil {
		return err
	}
	if err := c.AppendEvent(ev); err != nil {
		return &RecordError{err}
	}
	return nil
}

func (d *Decoder) schema(ctx context.Context, id int) (writerSchema, error) {
	d.mu.Lock()
	s, ok := d.ids[id]
	d.mu.Unlock()
	if ok {
		return s, nil
	}
	text, err := d.reg.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == 404 {
			return s, &RecordError{fmt.Errorf("schema id %d is not in the registry", id)}
		}
		return s, fmt.Errorf("schema registry: %w", err)
	}
	parsed, err := ParseAvro(text.Schema)
	if err != nil {
		return s, &RecordError{fmt.Errorf("schema id %d: %w", id, err)}
	}
	// Keep only what decodes: the compiled decoder when it covers the
	// schema (hamba's parsed schema is garbage then: with thousands of items
	// it was most of a pipeline's memory), else the parsed schema.
	var name string
	if n, ok := parsed.(avro.NamedSchema); ok {
		name = n.FullName()
	}
	if c, err := compileEnvelope(parsed); err == nil {
		s = writerSchema{compiled: c, name: name}
	} else {
		s = writerSchema{avro: parsed, name: name}
	}
	if p, err := planEnvelope(parsed); err == nil {
		s.columns = p
	}
	d.mu.Lock()
	d.ids[id] = s
	d.mu.Unlock()
	return s, nil
}
