package lookup

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// AvroType is the media type of Avro answers: each record a change event
// of the grant's projected schema (the one its feed is registered under,
// or the item's own), in Confluent's wire format (magic byte, schema id,
// Avro body). A page is its records, each preceded by its length (4
// bytes, big-endian).
const AvroType = "application/vnd.jutong.avro"

// wantsAvro says whether the request asks for Avro.
func wantsAvro(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, AvroType) || strings.Contains(a, "avro/binary")
}

// schemaID returns the registered id of the schema g's records are
// encoded with (registering it, as the bus, when its feed has not yet),
// and the schema.
func (s *Service) schemaID(ctx context.Context, dept string, it *catalog.Item, g Grant) (int, *schemas.Schema, error) {
	if s.reg == nil {
		return 0, nil, &Denied{Status: http.StatusNotAcceptable, Reason: "Avro answers need the schema registry, which this bus did not give the lookups: ask for JSON"}
	}
	p := s.projection(it, g)
	subject := p.Topic(dept, g.ID) + "-value"
	sc, err := p.Schema()
	if err != nil {
		return 0, nil, err
	}
	if id, ok := s.ids.Load(subject); ok {
		return id.(int), sc, nil
	}
	ss, err := s.reg.CreateSchema(ctx, subject, sr.Schema{Schema: sc.JSON, Type: sr.TypeAvro})
	if err != nil {
		return 0, nil, fmt.Errorf("lookup: the schema of %s: %w", subject, err)
	}
	s.ids.Store(subject, ss.ID)
	return ss.ID, sc, nil
}

// avro encodes a record as a framed change event of sc.
func avro(sc *schemas.Schema, id int, rec *Record) ([]byte, error) {
	ev := &schemas.Event{ID: rec.Provenance.EventID, Op: schemas.Op(rec.Provenance.Op), Key: rec.Key, Data: rec.raw,
		Source: schemas.Source{Department: rec.Provenance.Source}, EventTime: rec.Provenance.EventTime, PublishTime: rec.Provenance.PublishTime}
	body, err := sc.AppendEncode(nil, ev)
	if err != nil {
		return nil, err
	}
	return schemas.Frame(nil, id, body), nil
}

// replyAvro answers records in Avro, with the provenance Avro's envelope
// lacks (partition, offset of the first record) and the grant in headers.
func (s *Service) replyAvro(w http.ResponseWriter, r *http.Request, dept string, it *catalog.Item, g Grant, recs []Record, next string) error {
	id, sc, err := s.schemaID(r.Context(), dept, it, g)
	if err != nil {
		return err
	}
	var out []byte
	for i := range recs {
		b, err := avro(sc, id, &recs[i])
		if err != nil {
			return err
		}
		if len(recs) > 1 || next != "" || r.URL.Query().Get("field") != "" {
			out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
		}
		out = append(out, b...)
	}
	h := w.Header()
	h.Set("Content-Type", AvroType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Jutong-Grant", g.ID)
	h.Set("X-Jutong-Schema-Id", strconv.Itoa(id))
	if len(recs) == 1 {
		h.Set("X-Jutong-Partition", strconv.Itoa(int(recs[0].Provenance.Partition)))
		h.Set("X-Jutong-Offset", strconv.FormatInt(recs[0].Provenance.Offset, 10))
	}
	if next != "" {
		h.Set("X-Jutong-Next", next)
	}
	_, err = w.Write(out)
	return err
}
