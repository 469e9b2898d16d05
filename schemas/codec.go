package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hamba/avro/v2"
)

// ErrNotFramed is returned for bytes that do not start with the Confluent magic byte.
var ErrNotFramed = errors.New("schemas: not a Confluent-framed record (magic byte 0, 4-byte schema id)")

// Frame prepends the Confluent header (magic 0, big-endian schema id) to payload.
func Frame(dst []byte, id int, payload []byte) []byte {
	dst = append(dst, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(id))
	return append(dst, payload...)
}

// Unframe splits a Confluent-framed record into schema id and Avro payload.
func Unframe(b []byte) (id int, payload []byte, err error) {
	if len(b) < 5 || b[0] != 0 {
		return 0, nil, ErrNotFramed
	}
	return int(binary.BigEndian.Uint32(b[1:5])), b[5:], nil
}

// Encode returns the Avro binary of e (without framing).
func (s *Schema) Encode(e *Event) ([]byte, error) { return s.AppendEncode(nil, e) }

// AppendEncode appends the Avro binary of e (without framing) to dst.
func (s *Schema) AppendEncode(dst []byte, e *Event) ([]byte, error) {
	b, err := s.enc.append(dst, e)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s key %s: %w", s.Item.Code, e.Key, err)
	}
	return b, nil
}

// Decode parses the Avro binary of an event written with schema writer; s is
// the reader's schema (today always the same item's schema).
func Decode(writer avro.Schema, payload []byte) (*Event, error) {
	var m map[string]any
	if err := avro.Unmarshal(writer, payload, &m); err != nil {
		return nil, fmt.Errorf("schemas: decode: %w", err)
	}
	e := &Event{}
	e.ID, _ = m["event_id"].(string)
	op, _ := m["op"].(string)
	e.Op = Op(op)
	e.Key, _ = m["key"].(string)
	if d, ok := m["data"].(map[string]any); ok {
		// A record in a union is keyed by its full name; there is only one branch.
		for _, v := range d {
			e.Data, _ = v.(map[string]any)
		}
	}
	if src, ok := m["source"].(map[string]any); ok {
		e.Source.Department, _ = src["department"].(string)
		e.Source.System, _ = src["system"].(string)
		e.Source.Adapter, _ = src["adapter"].(string)
	}
	e.EventTime, _ = m["event_time"].(time.Time)
	e.PublishTime, _ = m["publish_time"].(time.Time)
	if !e.Op.Valid() || e.Key == "" {
		return nil, fmt.Errorf("schemas: decode: event without a valid op and key (op %q)", op)
	}
	return e, nil
}
