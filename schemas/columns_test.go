package schemas_test

import (
	"bytes"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// TestColumnsMatchMapDecoder: for every catalog item, the column decoder
// reads what the map decoder reads (row by row, as events), renders the
// same JSON byte for byte, and refuses truncated input without leaving half
// a row.
func TestColumnsMatchMapDecoder(t *testing.T) {
	cat, _ := catalog.Sample()
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			t.Fatal(err)
		}
		g := synth.New(it, 9, time.Now())
		g.DeleteEvery = 7
		cols := schemas.NewColumns(it)
		var want []*schemas.Event
		for i := 0; i < 200; i++ {
			e := g.Next()
			e.Source = schemas.Source{Department: it.Source, System: "系统<&>", Adapter: "sdk"}
			e.PublishTime = time.Now().Truncate(time.Millisecond)
			if i%5 == 0 {
				synth.ClearOptional(it, e.Data)
			}
			b, err := s.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemas.DecodeColumnsWith(s.Avro, cols, b[:len(b)-3]); err == nil {
				t.Fatalf("%s: a truncated record decoded", it.Code)
			}
			if cols.N != len(want) {
				t.Fatalf("%s: a refused record left %d rows, want %d", it.Code, cols.N, len(want))
			}
			if err := schemas.DecodeColumnsWith(s.Avro, cols, b); err != nil {
				t.Fatalf("%s: %v", it.Code, err)
			}
			ev, err := schemas.DecodeCompiled(s.Avro, b)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, ev)
		}
		for i, ev := range want {
			if got := cols.Event(i); !sameEvent(got, ev) {
				t.Fatalf("%s row %d:\ncolumns %+v\n    map %+v", it.Code, i, got, ev)
			}
			wantJSON, err := schemas.AppendJSONValues(nil, it, ev.Data)
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, err := cols.AppendJSON(nil, i)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Fatalf("%s row %d JSON:\ncolumns %s\n    map %s", it.Code, i, gotJSON, wantJSON)
			}
		}
	}
}

// TestColumnsOlderWriter: a record written with an earlier schema of the
// item (a field added since) leaves the new field absent; a writer whose
// field has another type is not decoded by columns (the map decoder is).
func TestColumnsOlderWriter(t *testing.T) {
	cat, _ := catalog.Sample()
	it := cat.Item("legal_person.enterprise_registration")
	old := *it
	old.Fields = slices.Clone(it.Fields[:len(it.Fields)-1])
	last := it.Fields[len(it.Fields)-1]
	if last.Required {
		t.Fatalf("the test wants the item's last field optional")
	}
	s, err := schemas.For(&old)
	if err != nil {
		t.Fatal(err)
	}
	e := synth.New(it, 1, time.Now()).Next()
	delete(e.Data, last.Name)
	b, err := s.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	cols := schemas.NewColumns(it)
	if err := schemas.DecodeColumnsWith(s.Avro, cols, b); err != nil {
		t.Fatal(err)
	}
	if v := cols.Value(len(it.Fields)-1, 0); v != nil {
		t.Fatalf("a field the writer did not have: %v, want nil", v)
	}
	changed := old
	changed.Fields = slices.Clone(old.Fields)
	for i, f := range changed.Fields {
		if f.Type == catalog.TypeString && f.Name != it.Key {
			g := *f
			g.Type = catalog.TypeLong
			changed.Fields[i] = &g
			break
		}
	}
	s2, err := schemas.For(&changed)
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.DecodeColumnsWith(s2.Avro, cols, b); err == nil {
		t.Fatal("a writer field of another type was decoded into the columns")
	}
}

// TestColumnsDecimals: decimals beyond an int64, negative ones and zero
// render as big.Rat's FloatString does.
func TestColumnsDecimals(t *testing.T) {
	f := &catalog.Field{Name: "amount", Type: catalog.TypeDecimal, Precision: 38, Scale: 4}
	it := &catalog.Item{Code: "x.y", Key: "id", Fields: []*catalog.Field{{Name: "id", Type: catalog.TypeString, Required: true}, f}}
	s, err := schemas.For(it)
	if err != nil {
		t.Fatal(err)
	}
	cols, fromAvro := schemas.NewColumns(it), schemas.NewColumns(it)
	for _, v := range []string{"0", "-0.5", "12.3456", "-92233720368547.7580", "123456789012345678901234567890.1234", "-123456789012345678901234567890.1234"} {
		r, _ := new(big.Rat).SetString(v)
		ev := &schemas.Event{ID: "e", Op: schemas.OpCreate, Key: "k", Data: map[string]any{"id": "k", "amount": r}}
		if err := cols.AppendEvent(ev); err != nil {
			t.Fatal(err)
		}
		got := string(cols.Fields[1].AppendDecimal(nil, cols.N-1))
		if want := r.FloatString(4); got != want {
			t.Errorf("%s: got %s, want %s", v, got, want)
		}
		if back := cols.Value(1, cols.N-1).(*big.Rat); back.Cmp(r) != 0 {
			t.Errorf("%s: reads back as %s", v, back.RatString())
		}
		b, err := s.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemas.DecodeColumnsWith(s.Avro, fromAvro, b); err != nil {
			t.Fatal(err)
		}
		if got := string(fromAvro.Fields[1].AppendDecimal(nil, fromAvro.N-1)); got != r.FloatString(4) {
			t.Errorf("%s from Avro: got %s", v, got)
		}
	}
}
