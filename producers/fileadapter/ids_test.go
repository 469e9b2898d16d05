package fileadapter

import (
	"bytes"
	"testing"

	"github.com/jutong/jutong/model/catalog"
)

// A run stopped before it saved its state publishes the same changes again
// when run again: under the same event ids, so that repeats can be told.
func TestRepeatedRunHasTheSameEventIDs(t *testing.T) {
	cat, _ := catalog.Sample()
	it := cat.Item("legal_person.enterprise_registration")
	extract := func() []line {
		lines, err := read(bytes.NewReader([]byte("uscc,name\n91500000MA5U7CQ96X,甲\n91500000MA5U7CQ96X2,乙\n")), CSV, it, "")
		if err != nil {
			t.Fatal(err)
		}
		return lines
	}
	prev := &state{Item: it.Code, Hashes: map[string]string{"gone": "h1"}}
	a := &Adapter{cfg: Config{Item: it}, prev: prev}
	b := &Adapter{cfg: Config{Item: it}, prev: prev}
	ca, cb := a.diff(extract()), b.diff(extract())
	if len(ca.events) == 0 || len(ca.events) != len(cb.events) {
		t.Fatalf("%d and %d events", len(ca.events), len(cb.events))
	}
	ids := map[string]bool{}
	for i := range ca.events {
		if ca.events[i].ID != cb.events[i].ID {
			t.Errorf("event %d (%s %s): ids %s and %s", i, ca.events[i].Op, ca.events[i].Key, ca.events[i].ID, cb.events[i].ID)
		}
		ids[ca.events[i].ID] = true
	}
	if len(ids) != len(ca.events) {
		t.Errorf("%d distinct ids for %d changes", len(ids), len(ca.events))
	}
	// The same key changing again later is another change: another id.
	later := &Adapter{cfg: Config{Item: it}, prev: &state{Item: it.Code, Hashes: map[string]string{"91500000MA5U7CQ96X": "older"}}}
	for _, e := range later.diff(extract()).events {
		if e.Key == "91500000MA5U7CQ96X" && ids[e.ID] {
			t.Errorf("%s %s reuses an id of another change", e.Op, e.Key)
		}
	}
}
