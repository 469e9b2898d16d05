package feed

import (
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
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
	if k := p.Key("50010319900307123X"); !strings.HasPrefix(k, "k") || strings.Contains(k, "500103") {
		t.Errorf("the key %q is not a pseudonym", k)
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

// TestPseudonymousKeys: a masked key becomes a pseudonym unique per key,
// even for two citizen IDs whose masked forms are the same, stable, and
// different under another grant's secret.
func TestPseudonymousKeys(t *testing.T) {
	cat, _ := catalog.Sample()
	it := cat.Item("population.resident_registration")
	g := Grant{ID: "app-1", Item: it.Code, Fields: []string{"citizen_id", "name"}, Grade: 2, KeySecret: GrantKeySecret([]byte("bus secret"), "app-1")}
	p := Project(it, g)
	a, b := "110101199003070018", "110101198001010018" // both mask to 110101********0018
	if Mask(it.KeyField(), a) != Mask(it.KeyField(), b) {
		t.Fatal("the test's two IDs should mask alike")
	}
	if p.Key(a) == p.Key(b) || p.Key(a) != Project(it, g).Key(a) || !strings.HasPrefix(p.Key(a), "k") || len(p.Key(a)) != 33 { // stable: the same from another projection of the grant
		t.Fatalf("pseudonyms %q %q", p.Key(a), p.Key(b))
	}
	g2 := g
	g2.ID, g2.KeySecret = "app-2", GrantKeySecret([]byte("bus secret"), "app-2")
	if Project(it, g2).Key(a) == p.Key(a) {
		t.Fatal("two grants share a pseudonym: their keys could be joined")
	}
	if strings.Contains(p.Key(a), a[:6]) {
		t.Fatal("the pseudonym shows the key")
	}
	clear := Grant{ID: "app-3", Item: it.Code, Grade: 4}
	if Project(it, clear).Key(a) != a {
		t.Fatal("a grant that does not mask the key gets a pseudonym")
	}
}

// TestApplyRow: projecting a record from columns gives what projecting its
// data gives, for every item, at every grade, with fields dropped, null
// and deleted.
func TestApplyRow(t *testing.T) {
	cat, _ := catalog.Sample()
	for _, it := range cat.Items {
		g := synth.New(it, 5, time.Now())
		g.DeleteEvery = 6
		cols := schemas.NewColumns(it)
		var evs []*schemas.Event
		for n := range 40 {
			ev := g.Next()
			if n%4 == 0 {
				synth.ClearOptional(it, ev.Data)
			}
			if err := cols.AppendEvent(ev); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		var some []string
		for k, f := range it.Fields {
			if k%2 == 0 {
				some = append(some, f.Name)
			}
		}
		for grade := 1; grade <= 4; grade++ {
			p := Project(it, Grant{ID: "g", Department: "health", Item: it.Code, Fields: some, Grade: grade})
			for i, ev := range evs {
				want, got := p.Apply(ev.Data), p.ApplyRow(cols, i)
				if (want == nil) != (got == nil) || len(want) != len(got) {
					t.Fatalf("%s grade %d row %d: %v, want %v", it.Code, grade, i, got, want)
				}
				for k, v := range want {
					if r, ok := v.(*big.Rat); ok {
						if r2, ok := got[k].(*big.Rat); !ok || r.Cmp(r2) != 0 {
							t.Fatalf("%s grade %d row %d %s: %v, want %v", it.Code, grade, i, k, got[k], v)
						}
						continue
					}
					if !reflect.DeepEqual(got[k], v) {
						t.Fatalf("%s grade %d row %d %s: %#v, want %#v", it.Code, grade, i, k, got[k], v)
					}
				}
			}
		}
	}
}
