package schemas

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jutong/jutong/model/catalog"
)

// Receive appends to dst the payload (Avro, without framing) of a record
// of a received item (docs/federation.md) made from payload, a record
// written with s: the upstream item as its grant delivers it, whose fields
// the received item has in the same order, followed by its provenance
// field (catalog.UpstreamField). The record's bytes are copied, not decoded
// and encoded again; provenance is appended to its data (a delete has
// none), the business key field is set to the record's key when it differs
// (a masked key: the feed shows its masked form, the key is the grant's
// pseudonym), and the source and publish time are stamped. The result is
// byte for byte the received item's AppendEncode of the event so
// translated (TestReceive).
func (s *Schema) Receive(dst, payload []byte, provenance func(sourceDepartment string) string, src Source, publishTime time.Time) ([]byte, error) {
	r := &reader{b: payload}
	fail := func(what string, err error) ([]byte, error) {
		return nil, fmt.Errorf("schemas: receive %s: %s: %w", s.Item.Code, what, err)
	}
	if _, err := r.bytes(); err != nil { // event_id
		return fail("event_id", err)
	}
	if _, err := r.long(); err != nil { // op
		return fail("op", err)
	}
	key, err := r.bytes()
	if err != nil {
		return fail("key", err)
	}
	branch, err := r.long()
	if err != nil {
		return fail("data", err)
	}
	keyAt, keyEnd := -1, -1 // the key field's bytes, when they must be replaced
	switch branch {
	case 0:
	case 1:
		for i := range s.enc.fields {
			f := &s.enc.fields[i]
			if f.name == s.Item.Key && !f.nullable && f.typ == catalog.TypeString {
				at := r.pos
				v, err := r.bytes()
				if err != nil {
					return fail("field "+f.name, err)
				}
				if string(v) != string(key) {
					keyAt, keyEnd = at, r.pos
				}
				continue
			}
			if err := s.enc.skipField(r, f); err != nil {
				return fail("data", err)
			}
		}
	default:
		return fail("data", fmt.Errorf("union index %d out of range", branch))
	}
	dataEnd := r.pos
	dept, err := r.bytes()
	if err != nil {
		return fail("source.department", err)
	}
	for _, what := range []string{"source.system", "source.adapter"} {
		if _, err := r.bytes(); err != nil {
			return fail(what, err)
		}
	}
	eventAt := r.pos
	if _, err := r.long(); err != nil {
		return fail("event_time", err)
	}
	eventEnd := r.pos
	if _, err := r.long(); err != nil {
		return fail("publish_time", err)
	}
	if r.pos != len(payload) {
		return fail("end", fmt.Errorf("%d bytes left over", len(payload)-r.pos))
	}
	if keyAt >= 0 {
		dst = append(dst, payload[:keyAt]...)
		dst = appendString(dst, string(key))
		dst = append(dst, payload[keyEnd:dataEnd]...)
	} else {
		dst = append(dst, payload[:dataEnd]...)
	}
	if branch == 1 {
		dst = appendString(dst, provenance(string(dept)))
	}
	dst = appendString(dst, src.Department)
	dst = appendString(dst, src.System)
	dst = appendString(dst, src.Adapter)
	dst = append(dst, payload[eventAt:eventEnd]...)
	return binary.AppendVarint(dst, millis(publishTime)), nil
}
