package schemas_test

import (
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

func benchEvents(b *testing.B, n int) (*schemas.Schema, []*schemas.Event) {
	cat, _ := catalog.Sample()
	it := cat.Item("legal_person.enterprise_registration")
	s, err := schemas.For(it)
	if err != nil {
		b.Fatal(err)
	}
	g := synth.New(it, 1, time.Now())
	evs := make([]*schemas.Event, n)
	for i := range evs {
		evs[i] = g.Next()
		evs[i].PublishTime = time.Now()
		evs[i].Source = schemas.Source{Department: "market_supervision", System: "s", Adapter: "sdk"}
	}
	return s, evs
}

// BenchmarkEncode encodes a 15-field item's change events (Avro binary).
func BenchmarkEncode(b *testing.B) {
	s, evs := benchEvents(b, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Encode(evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecode decodes a 15-field item's change events with the compiled
// decoder; BenchmarkDecodeHamba with hamba/avro into maps, for comparison.
func BenchmarkDecode(b *testing.B) {
	s, evs := benchEvents(b, 1024)
	payloads := make([][]byte, len(evs))
	for i, e := range evs {
		payloads[i], _ = s.Encode(e)
	}
	decode, err := schemas.CompiledDecoder(s.Avro)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := decode(payloads[i%len(payloads)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeHamba(b *testing.B) {
	s, evs := benchEvents(b, 1024)
	payloads := make([][]byte, len(evs))
	for i, e := range evs {
		payloads[i], _ = s.Encode(e)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := schemas.Decode(s.Avro, payloads[i%len(payloads)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRender renders a 15-field item's record as the ClickHouse sink
// stores it (JSON without reflection).
func BenchmarkRender(b *testing.B) {
	s, evs := benchEvents(b, 1024)
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = schemas.AppendJSONValues(buf[:0], s.Item, evs[i%len(evs)].Data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeColumns decodes the same records into columns, in batches
// of 1,024 (the columns' memory kept from batch to batch, as a sink does).
func BenchmarkDecodeColumns(b *testing.B) {
	s, evs := benchEvents(b, 1024)
	payloads := make([][]byte, len(evs))
	for i, e := range evs {
		payloads[i], _ = s.Encode(e)
	}
	cols := schemas.NewColumns(s.Item)
	decode, err := schemas.ColumnDecoder(s.Avro, s.Item)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(payloads) == 0 {
			cols.Reset()
		}
		if err := decode(cols, payloads[i%len(payloads)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderColumns renders rows as JSON from columns.
func BenchmarkRenderColumns(b *testing.B) {
	s, evs := benchEvents(b, 1024)
	cols := schemas.NewColumns(s.Item)
	for _, e := range evs {
		if err := cols.AppendEvent(e); err != nil {
			b.Fatal(err)
		}
	}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = cols.AppendJSON(buf[:0], i%cols.N); err != nil {
			b.Fatal(err)
		}
	}
}
