package rules_test

import (
	"math"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/schemas"
)

// TestCheckRow: for every catalog item, CheckRow on a record decoded into
// columns gives exactly Check's verdict on the same record decoded into a
// map (rule, field, reason), for valid records and for every kind of bad
// one a department can send in Avro.
func TestCheckRow(t *testing.T) {
	cat, _ := catalog.Sample()
	now := time.Now()
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			t.Fatal(err)
		}
		g := synth.New(it, 11, now)
		g.DeleteEvery = 9
		var evs []*schemas.Event
		for i := 0; i < 60; i++ {
			ev := g.Next()
			ev.Source.Department = it.Source
			evs = append(evs, ev)
			if bad := g.Corrupt(ev); bad != nil {
				evs = append(evs, bad)
			}
			if ev.Data == nil {
				withData := *ev
				withData.Data = map[string]any{}
				evs = append(evs, &withData) // a delete with data
				continue
			}
			for _, mutate := range mutations(it, i) {
				bad := *ev
				bad.Data = map[string]any{}
				for k, v := range ev.Data {
					bad.Data[k] = v
				}
				mutate(&bad)
				evs = append(evs, &bad)
			}
		}
		checked := 0
		for _, ev := range evs {
			b, err := s.Encode(ev)
			if err != nil {
				continue // not expressible in Avro: never reaches the door's columns
			}
			seen, err := schemas.Decode(s.Avro, b)
			if err != nil {
				t.Fatal(err)
			}
			cols := schemas.NewColumns(it)
			if err := cols.AppendEvent(seen); err != nil {
				t.Fatal(err)
			}
			for _, dept := range []string{it.Source, "someone_else"} {
				want := rules.Check(it, dept, seen, now)
				got := rules.CheckRow(it, dept, cols, 0, now)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: CheckRow %+v, Check %+v (event %+v)", it.Code, got, want, seen)
				}
				if want != nil {
					checked++
				}
			}
		}
		if checked == 0 {
			t.Fatalf("%s: no bad record was checked", it.Code)
		}
	}
}

// mutations are the bad records a department may send, field by field.
func mutations(it *catalog.Item, i int) []func(*schemas.Event) {
	var out []func(*schemas.Event)
	out = append(out,
		func(e *schemas.Event) { e.Key = e.Key + "x" },                     // key.match
		func(e *schemas.Event) { e.Key = " " },                             // key.required
		func(e *schemas.Event) { e.ID = "" },                               // event_id.required
		func(e *schemas.Event) { e.ID = string(make([]byte, 200)) },        // NUL, length
		func(e *schemas.Event) { e.EventTime = time.Now().Add(time.Hour) }, // event_time.future
	)
	for _, f := range it.Fields {
		f := f
		switch f.Type {
		case catalog.TypeString:
			out = append(out,
				func(e *schemas.Event) { e.Data[f.Name] = "a\x00b" },
				func(e *schemas.Event) { e.Data[f.Name] = "\xff\xfe" },
				func(e *schemas.Event) { e.Data[f.Name] = " \t" },
				func(e *schemas.Event) { e.Data[f.Name] = nil })
		case catalog.TypeLong:
			out = append(out, func(e *schemas.Event) { e.Data[f.Name] = int64(math.MaxInt64 - int64(i)) },
				func(e *schemas.Event) { e.Data[f.Name] = int64(-1 - i) })
		case catalog.TypeDouble:
			out = append(out, func(e *schemas.Event) { e.Data[f.Name] = math.NaN() },
				func(e *schemas.Event) { e.Data[f.Name] = -1e300 })
		case catalog.TypeDecimal:
			out = append(out, func(e *schemas.Event) {
				r := new(big.Rat).SetFrac(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.Precision-f.Scale+i%3)), nil), big.NewInt(1))
				e.Data[f.Name] = r // too many digits, or just enough
			}, func(e *schemas.Event) { e.Data[f.Name] = big.NewRat(-int64(i)-1, 1) })
		case catalog.TypeDate, catalog.TypeTimestamp:
			out = append(out, func(e *schemas.Event) { e.Data[f.Name] = time.Now().Add(72 * time.Hour).UTC().Truncate(24 * time.Hour) })
		}
		if !f.Required {
			continue
		}
		out = append(out, func(e *schemas.Event) { e.Data[f.Name] = nil })
	}
	return out
}
