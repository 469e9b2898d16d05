package schemas

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
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
	if c, err := compileEnvelope(parsed); err == nil {
		s = writerSchema{compiled: c}
	} else {
		s = writerSchema{avro: parsed}
	}
	d.mu.Lock()
	d.ids[id] = s
	d.mu.Unlock()
	return s, nil
}
