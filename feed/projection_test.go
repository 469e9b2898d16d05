package feed

import (
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/jutong/jutong/catalog"
)

func TestProjectAndMask(t *testing.T) {
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	it := cat.Item("population.resident_registration")
	p := Project(it, Grant{ID: "g", Department: "health", Item: it.Code, Fields: []string{"name", "division_code", "phone"}, Grade: 2})
	if p.Identity() {
		t.Fatal("a projection that masks is the identity")
	}
	if got := p.Masked(); !slices.Equal(got, []string{"citizen_id", "phone"}) {
		t.Errorf("masked %v", got)
	}
	if d := p.Dropped(); !slices.Contains(d, "birth_date") || slices.Contains(d, "citizen_id") {
		t.Errorf("dropped %v (the key always travels)", d)
	}
	data := map[string]any{"citizen_id": "50010319900307123X", "name": "张三丰", "division_code": "500103", "phone": "13800138000",
		"birth_date": time.Date(1990, 3, 7, 0, 0, 0, 0, time.UTC)}
	out := p.Apply(data)
	want := map[string]any{"citizen_id": "500103********123X", "name": "张三丰", "division_code": "500103", "phone": "13*******00"}
	if len(out) != len(want) {
		t.Fatalf("projected %v", out)
	}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("%s = %v, want %v", k, out[k], v)
		}
	}
	if p.Key("50010319900307123X") != "500103********123X" {
		t.Error("the key is not masked")
	}
	if _, err := p.Schema(); err != nil {
		t.Fatalf("the projected schema: %v", err)
	}
	var all []string
	for _, f := range it.Fields {
		all = append(all, f.Name)
	}
	if !Project(it, Grant{Fields: all, Grade: 4}).Identity() {
		t.Error("every field at grade 4 is not the identity")
	}
	for _, tc := range []struct {
		f    *catalog.Field
		v    any
		want string
	}{
		{&catalog.Field{Name: "legal_representative", Type: catalog.TypeString}, "王小明", "王**"},
		{&catalog.Field{Name: "uscc", Type: catalog.TypeString, Rules: []string{"uscc"}}, "91500000MA5U7CQ96X", "91500000**********"},
		{&catalog.Field{Name: "capital", Type: catalog.TypeDecimal}, big.NewRat(5, 1), "***"},
		{&catalog.Field{Name: "born", Type: catalog.TypeDate}, time.Now(), "****-**-**"},
		{&catalog.Field{Name: "address", Type: catalog.TypeString}, "重庆市渝中区解放碑步行街88号", "重庆市*********88号"},
	} {
		if got := Mask(tc.f, tc.v); got != tc.want {
			t.Errorf("Mask(%s, %v) = %q, want %q", tc.f.Name, tc.v, got, tc.want)
		}
	}
}
