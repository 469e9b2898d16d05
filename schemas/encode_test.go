package schemas_test

import (
	"bytes"
	"math/big"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// hambaEncode is the reference: hamba/avro's generic encoding of the event.
func hambaEncode(t *testing.T, s *schemas.Schema, e *schemas.Event) []byte {
	t.Helper()
	var data any
	if e.Data != nil {
		data = map[string]any{"jutong." + s.Item.Code + ".Value": e.Data}
	}
	b, err := avro.Marshal(s.Avro, map[string]any{
		"event_id": e.ID, "op": string(e.Op), "key": e.Key, "data": data,
		"source":     map[string]any{"department": e.Source.Department, "system": e.Source.System, "adapter": e.Source.Adapter},
		"event_time": e.EventTime, "publish_time": e.PublishTime,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEncoderMatchesHamba: the compiled encoder writes exactly hamba's
// bytes, for every catalog item, and hamba decodes them back.
func TestEncoderMatchesHamba(t *testing.T) {
	cat, _ := catalog.Sample()
	now := time.Now()
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			t.Fatal(err)
		}
		g := synth.New(it, 3, now)
		for i := 0; i < 300; i++ {
			e := g.Next()
			e.PublishTime = now.Truncate(time.Millisecond)
			e.Source = schemas.Source{Department: it.Source, System: "系统", Adapter: "sdk"}
			got, err := s.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			if want := hambaEncode(t, s, e); !bytes.Equal(got, want) {
				t.Fatalf("%s event %d (%s): bytes differ\n got %x\nwant %x", it.Code, i, e.Op, got, want)
			}
			if _, err := schemas.Decode(s.Avro, got); err != nil {
				t.Fatalf("%s: hamba cannot decode: %v", it.Code, err)
			}
		}
	}
}

func TestDecimalEdges(t *testing.T) {
	cat, _ := catalog.Sample()
	it := cat.Item("legal_person.enterprise_registration")
	s, _ := schemas.For(it)
	base := synth.New(it, 5, time.Now()).Next()
	huge, _ := new(big.Rat).SetString("99999999999999.9999")
	for _, r := range []*big.Rat{
		big.NewRat(0, 1), big.NewRat(1, 10000), big.NewRat(-1, 10000), big.NewRat(-128, 10000), big.NewRat(-129, 10000),
		big.NewRat(127, 10000), big.NewRat(128, 10000), big.NewRat(255, 10000), big.NewRat(-32768, 10000),
		big.NewRat(12345678901, 10000), huge, new(big.Rat).Neg(huge),
	} {
		base.Data["registered_capital"] = r
		got, err := s.Encode(base)
		if err != nil {
			t.Fatal(err)
		}
		if want := hambaEncode(t, s, base); !bytes.Equal(got, want) {
			t.Fatalf("%s: got %x want %x", r.FloatString(4), got, want)
		}
		back, _ := schemas.Decode(s.Avro, got)
		if back.Data["registered_capital"].(*big.Rat).Cmp(r) != 0 {
			t.Fatalf("%s decoded as %v", r.FloatString(4), back.Data["registered_capital"])
		}
	}
}
