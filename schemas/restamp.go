package schemas

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jutong/jutong/model/catalog"
)

// Restamp appends to dst the payload (Avro, without framing) of an event
// written with s, with the source department, event time and publish time
// replaced: what the door stamps. The event id, op, key and data are copied
// as they are, not decoded and encoded again; the result is byte for byte
// s.AppendEncode of the stamped event (TestRestamp).
func (s *Schema) Restamp(dst, payload []byte, department string, eventTime, publishTime time.Time) ([]byte, error) {
	r := &reader{b: payload}
	skip := func(what string, fn func() error) error {
		if err := fn(); err != nil {
			return fmt.Errorf("schemas: restamp %s: %s: %w", s.Item.Code, what, err)
		}
		return nil
	}
	str := func() error { _, err := r.bytes(); return err }
	long := func() error { _, err := r.long(); return err }
	if err := skip("event_id", str); err != nil {
		return nil, err
	}
	if err := skip("op", long); err != nil {
		return nil, err
	}
	if err := skip("key", str); err != nil {
		return nil, err
	}
	if err := skip("data", func() error { return s.enc.skipData(r) }); err != nil {
		return nil, err
	}
	head := r.pos
	if err := skip("source.department", str); err != nil {
		return nil, err
	}
	system, adapter := r.pos, 0
	if err := skip("source.system", str); err != nil {
		return nil, err
	}
	if err := skip("source.adapter", str); err != nil {
		return nil, err
	}
	adapter = r.pos
	if err := skip("event_time", long); err != nil {
		return nil, err
	}
	if err := skip("publish_time", long); err != nil {
		return nil, err
	}
	if r.pos != len(payload) {
		return nil, fmt.Errorf("schemas: restamp %s: %d bytes left over", s.Item.Code, len(payload)-r.pos)
	}
	dst = append(dst, payload[:head]...)
	dst = appendString(dst, department)
	dst = append(dst, payload[system:adapter]...) // system and adapter as written
	dst = binary.AppendVarint(dst, millis(eventTime))
	return binary.AppendVarint(dst, millis(publishTime)), nil
}

// skipData reads past the data union (null, or the Value record).
func (enc *encoder) skipData(r *reader) error {
	branch, err := r.long()
	if err != nil {
		return err
	}
	switch branch {
	case 0:
		return nil
	case 1:
	default:
		return fmt.Errorf("union index %d out of range", branch)
	}
	for i := range enc.fields {
		if err := enc.skipField(r, &enc.fields[i]); err != nil {
			return err
		}
	}
	return nil
}

// skipField reads past one field of the Value record.
func (enc *encoder) skipField(r *reader, f *fieldEnc) error {
	if f.nullable {
		b, err := r.long()
		if err != nil {
			return err
		}
		if b == 0 {
			return nil
		}
		if b != 1 {
			return fmt.Errorf("field %s: union index %d out of range", f.name, b)
		}
	}
	var err error
	switch f.typ {
	case catalog.TypeString, catalog.TypeDecimal:
		_, err = r.bytes()
	case catalog.TypeDouble:
		if len(r.b)-r.pos < 8 {
			err = errShort
		} else {
			r.pos += 8
		}
	case catalog.TypeBoolean:
		if r.pos >= len(r.b) {
			err = errShort
		} else {
			r.pos++
		}
	default: // enum, long, date, timestamp
		_, err = r.long()
	}
	if err != nil {
		return fmt.Errorf("field %s: %w", f.name, err)
	}
	return nil
}
