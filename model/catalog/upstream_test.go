package catalog

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// TestUpstream: a received item's rules (docs/federation.md), each broken
// once, refused with the item and field named.
func TestUpstream(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("testdata", "valid", "catalog.json"))
	if err != nil {
		t.Fatal(err)
	}
	item, err := os.ReadFile(filepath.Join("testdata", "valid", "items", "legal_person.penalty.json"))
	if err != nil {
		t.Fatal(err)
	}
	build := func(t *testing.T, catEdit, itemEdit func(map[string]any)) error {
		var c, it map[string]any
		_ = json.Unmarshal(base, &c)
		_ = json.Unmarshal(item, &it)
		c["bus"] = "district_a"
		c["departments"] = append(c["departments"].([]any), map[string]any{"code": "city_bus", "name": "市级平台", "principal": "bus.city", "bus": "city"})
		it["source"] = "city_bus"
		it["upstream"] = map[string]any{"bus": "city", "item": "legal_person.penalty"}
		it["fields"] = append(it["fields"].([]any), map[string]any{"name": "upstream", "title": "上游来源", "type": "string", "required": true, "grade": 1})
		if catEdit != nil {
			catEdit(c)
		}
		if itemEdit != nil {
			itemEdit(it)
		}
		cb, _ := json.Marshal(c)
		ib, _ := json.Marshal(it)
		_, err := Load(fstest.MapFS{"catalog.json": {Data: cb}, "items/legal_person.penalty.json": {Data: ib}})
		return err
	}
	if err := build(t, nil, nil); err != nil {
		t.Fatalf("a valid received item: %v", err)
	}
	for name, tc := range map[string]struct {
		cat, item func(map[string]any)
		want      string
	}{
		"no upstream from a bus's department": {item: func(it map[string]any) { delete(it, "upstream") }, want: `its items are received from it, and need "upstream"`},
		"another bus": {item: func(it map[string]any) {
			it["upstream"] = map[string]any{"bus": "chengdu", "item": "legal_person.penalty"}
		}, want: `the source city_bus must stand for it`},
		"this bus":     {cat: func(c map[string]any) { c["bus"] = "city" }, want: `upstream bus "city" is this bus`},
		"no item code": {item: func(it map[string]any) { it["upstream"] = map[string]any{"bus": "city", "item": "penalty"} }, want: "upstream needs the bus and the item's code"},
		"no provenance field": {item: func(it map[string]any) {
			f := it["fields"].([]any)
			it["fields"] = f[:len(f)-1]
		}, want: `field upstream: a received item needs the field "upstream"`},
		"provenance field on an own item": {item: func(it map[string]any) {
			delete(it, "upstream")
			it["source"] = "tax"
		}, want: `the field name "upstream" is kept for items received from another bus`},
		"bad bus name": {cat: func(c map[string]any) { c["bus"] = "District A" }, want: `a bus's name is lower case`},
	} {
		t.Run(name, func(t *testing.T) {
			err := build(t, tc.cat, tc.item)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
