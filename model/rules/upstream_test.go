package rules_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/model/upstream"
	"github.com/jutong/jutong/schemas"
)

// TestUpstreamProvenance: a received item's records carry a provenance of
// the bus and item the catalog names, in the bridge's form; Check and
// CheckRow agree on each.
func TestUpstreamProvenance(t *testing.T) {
	cat, _ := catalog.Sample()
	src := cat.Item("legal_person.enterprise_registration")
	it := src.WithFields(append(append([]*catalog.Field{}, src.Fields...),
		&catalog.Field{Name: catalog.UpstreamField, Type: catalog.TypeString, Required: true, Grade: 1}))
	it.Upstream = &catalog.Upstream{Bus: "city", Item: src.Code}
	s, err := schemas.For(it)
	if err != nil {
		t.Fatal(err)
	}
	ok := upstream.Provenance{Bus: "city", Department: "market_supervision", Item: src.Code, Topic: src.Code, Partition: 1, Offset: 9}
	other := ok
	other.Bus = "chengdu"
	otherItem := ok
	otherItem.Item = "legal_person.tax_credit_rating"
	now := time.Now()
	for prov, want := range map[string]string{
		ok.String():        "",
		other.String():     rules.UpstreamProvenance,
		otherItem.String(): rules.UpstreamProvenance,
		"city:somewhere":   rules.UpstreamProvenance,
	} {
		ev := synth.New(src, 3, now).Next()
		ev.Op = schemas.OpCreate
		ev.Source.Department = it.Source
		ev.Data[catalog.UpstreamField] = prov
		b, err := s.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		seen, err := schemas.Decode(s.Avro, b)
		if err != nil {
			t.Fatal(err)
		}
		cols := schemas.NewColumns(it)
		if err := cols.AppendEvent(seen); err != nil {
			t.Fatal(err)
		}
		v := rules.Check(it, it.Source, seen, now)
		if row := rules.CheckRow(it, it.Source, cols, 0, now); !reflect.DeepEqual(row, v) {
			t.Fatalf("%s: CheckRow %+v, Check %+v", prov, row, v)
		}
		switch {
		case want == "" && v != nil:
			t.Fatalf("%s refused: %v", prov, v)
		case want != "" && (v == nil || v.Rule != want || v.Field != catalog.UpstreamField):
			t.Fatalf("%s: %v, want rule %s on field upstream", prov, v, want)
		}
	}
}
