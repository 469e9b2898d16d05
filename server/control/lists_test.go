package control

import (
	"encoding/json"
	"errors"
	"io/fs"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jutong/jutong/model/catalog"
)

// TestPartnerAppliesForOfferedItemsOnly: a neighbouring region's bus,
// partner of a shared list, may apply for what the list offers it, and is
// refused anything else, naming the rule.
func TestPartnerAppliesForOfferedItemsOnly(t *testing.T) {
	m := fstest.MapFS{}
	if err := fs.WalkDir(catalog.SampleFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(catalog.SampleFS(), p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.Unmarshal(m["catalog.json"].Data, &doc)
	doc["bus"] = "chongqing"
	doc["departments"] = append(doc["departments"].([]any), map[string]any{"code": "sichuan_bus", "name": "四川省一体化平台", "principal": "bus.sichuan"})
	m["catalog.json"].Data, _ = json.Marshal(doc)
	list, _ := json.Marshal(map[string]any{"code": "chuanyu", "name": "川渝通办共享清单", "partner": "sichuan", "department": "sichuan_bus",
		"agreement": "川渝政务数据共享合作协议", "offers": []string{"legal_person.enterprise_registration"},
		"approved": map[string]any{"by": "big_data", "on": "2026-11-30"}})
	m["lists/chuanyu.json"] = &fstest.MapFile{Data: list}
	cat, err := catalog.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	cal, err := NewCalendar(cat.Calendar)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := newApplication(cat, cal, "sichuan_bus", Request{Item: "legal_person.enterprise_registration", Purpose: "川渝通办"}, now); err != nil {
		t.Fatalf("the offered item: %v", err)
	}
	_, err = newApplication(cat, cal, "sichuan_bus", Request{Item: "population.resident_registration", Purpose: "川渝通办"}, now)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("an item no list offers: %v", err)
	}
	if _, err := newApplication(cat, cal, "tax", Request{Item: "population.resident_registration", Purpose: "纳税人核验"}, now); err != nil {
		t.Fatalf("a department of the city is not limited by the lists: %v", err)
	}
}
