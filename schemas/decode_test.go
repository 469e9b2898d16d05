package schemas_test

import (
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// TestCompiledDecoderMatchesHamba: for every catalog item, the compiled
// decoder reads exactly what hamba/avro reads, and refuses truncated input.
func TestCompiledDecoderMatchesHamba(t *testing.T) {
	cat, _ := catalog.Sample()
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			t.Fatal(err)
		}
		g := synth.New(it, 5, time.Now())
		g.DeleteEvery = 7
		for i := 0; i < 300; i++ {
			e := g.Next()
			e.Source = schemas.Source{Department: it.Source, System: "系统", Adapter: "sdk"}
			e.PublishTime = time.Now().Truncate(time.Millisecond)
			if i%5 == 0 { // optional fields absent
				synth.ClearOptional(it, e.Data)
			}
			b, err := s.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			want, err := schemas.Decode(s.Avro, b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := schemas.DecodeCompiled(s.Avro, b)
			if err != nil {
				t.Fatalf("%s: %v", it.Code, err)
			}
			if !sameEvent(got, want) {
				t.Fatalf("%s event %d:\ncompiled %+v\n   hamba %+v", it.Code, i, got, want)
			}
			if _, err := schemas.DecodeCompiled(s.Avro, b[:len(b)/2]); err == nil {
				t.Fatalf("%s: a truncated record decoded", it.Code)
			}
		}
	}
}

func sameEvent(a, b *schemas.Event) bool {
	if len(a.Data) != len(b.Data) {
		return false
	}
	for k, v := range a.Data {
		if r, ok := v.(*big.Rat); ok {
			r2, ok := b.Data[k].(*big.Rat)
			if !ok || r.Cmp(r2) != 0 {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(v, b.Data[k]) {
			return false
		}
	}
	a2, b2 := *a, *b
	a2.Data, b2.Data = nil, nil
	return reflect.DeepEqual(a2, b2)
}
