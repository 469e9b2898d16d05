// Package federation runs federated buses on one machine: the catalogs of
// a city bus and its district buses (each a full Jutong), and, for
// jutong dev --federation and its tests, the buses and their bridges as
// separate processes (docs/federation.md).
package federation

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/bridge"
)

// CityBus is the city bus's name in the federation's catalogs.
const CityBus = "city"

// Receive is an item a district receives from the city: the fields its
// grant there covers and the grant's grade.
type Receive struct {
	Item   string   `json:"item"`
	Fields []string `json:"fields"`
	Grade  int      `json:"grade"`
	// As is the item's code here when it is not the upstream's (the city
	// has its own item of that code).
	As string `json:"as,omitempty"`
}

// DistrictDepartment is a district bus's department on the city bus (the
// principal its bridge reads the city's grants as).
func DistrictDepartment(district string) string { return "district_" + district }

// CityDepartment is the city bus's department on a district bus (the
// principal the bridge publishes there as).
const CityDepartment = "city_bus"

// WriteCity writes the city's catalog into dir: base (the sample when nil)
// named CityBus, with a department for each district; replication, when
// positive, sets the topics' replication factor (one broker per bus on one
// machine).
func WriteCity(dir string, base fs.FS, districts []string, replication int) error {
	var depts []catalog.Department
	for _, d := range districts {
		code := DistrictDepartment(d)
		depts = append(depts, catalog.Department{Code: code, Name: d + "区大数据局", NameEN: "District " + d + " (its bus)", Principal: "dept." + code})
	}
	return WriteBus(dir, base, CityBus, depts, replication)
}

// WriteBus writes into dir the catalog base (the sample when nil) named
// bus, with the departments depts added (other buses' departments there,
// which apply for its items); replication as WriteCity's.
func WriteBus(dir string, base fs.FS, bus string, depts []catalog.Department, replication int) error {
	if base == nil {
		base = catalog.SampleFS()
	}
	if err := os.CopyFS(dir, base); err != nil {
		return fmt.Errorf("federation: copy the catalog: %w", err)
	}
	return editCatalog(dir, func(doc map[string]any) {
		doc["bus"] = bus
		list, _ := doc["departments"].([]any)
		for _, d := range depts {
			list = append(list, d)
		}
		doc["departments"] = list
		if td, ok := doc["topic_defaults"].(map[string]any); ok && replication > 0 {
			td["replication_factor"] = replication
		}
	})
}

// editCatalog rewrites dir's catalog.json as edit changes it.
func editCatalog(dir string, edit func(doc map[string]any)) error {
	path := filepath.Join(dir, "catalog.json")
	var doc map[string]any
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("federation: %s: %w", path, err)
	}
	edit(doc)
	return writeJSON(path, doc)
}

// WriteDistrict writes a district bus's catalog into dir: its own data
// authority and a civil affairs office, the city bus as a department
// (CityDepartment), and the items it receives from the city, each as its
// grant there delivers it (bridge.ReceivedItem).
func WriteDistrict(dir string, city *catalog.Catalog, district string, receives []Receive) error {
	if err := os.MkdirAll(filepath.Join(dir, "items"), 0o755); err != nil {
		return err
	}
	doc := map[string]any{
		"bus":       district,
		"authority": "big_data",
		"departments": []map[string]any{
			{"code": "big_data", "name": district + "区大数据应用发展管理局", "name_en": "District data authority", "principal": "dept.big_data"},
			{"code": "civil_affairs", "name": district + "区民政局", "name_en": "District civil affairs", "principal": "dept.civil_affairs"},
			{"code": CityDepartment, "name": "市级共享交换平台", "name_en": "The city bus", "principal": "bus." + CityBus, "bus": CityBus},
		},
		"bases":          city.Bases,
		"topic_defaults": map[string]any{"partitions": 3, "replication_factor": 1, "retention_ms": -1, "cleanup_policy": "delete"},
	}
	if err := writeJSON(filepath.Join(dir, "catalog.json"), doc); err != nil {
		return err
	}
	return writeReceived(dir, city, CityBus, CityDepartment, receives)
}

// AddReceiving makes the catalog in dir (a copy of a catalog, WriteCity's)
// receive items of the upstream bus up: a department standing for it
// (code dept, principal "bus.<bus>") and an item per receive, as its grant
// there delivers it. The city receiving a ministry's items ("coming home")
// is this, as a district receiving the city's.
func AddReceiving(dir string, up *catalog.Catalog, dept string, receives []Receive) error {
	err := editCatalog(dir, func(doc map[string]any) {
		depts, _ := doc["departments"].([]any)
		doc["departments"] = append(depts, catalog.Department{Code: dept, Name: up.BusName() + " 平台", NameEN: "The " + up.BusName() + " bus", Principal: "bus." + up.BusName(), Bus: up.BusName()})
	})
	if err != nil {
		return err
	}
	return writeReceived(dir, up, up.BusName(), dept, receives)
}

// writeReceived writes the received items' files (each Receive's As, or
// the upstream code) and loads the catalog to check it.
func writeReceived(dir string, up *catalog.Catalog, bus, dept string, receives []Receive) error {
	if err := os.MkdirAll(filepath.Join(dir, "items"), 0o755); err != nil {
		return err
	}
	for _, r := range receives {
		it := up.Item(r.Item)
		if it == nil {
			return fmt.Errorf("federation: %s has no item %s", bus, r.Item)
		}
		for _, f := range r.Fields {
			if it.Field(f) == nil {
				return fmt.Errorf("federation: %s has no field %q", r.Item, f)
			}
		}
		fields := r.Fields
		if len(fields) == 0 { // as an application: every field
			for _, f := range it.Fields {
				fields = append(fields, f.Name)
			}
		}
		recv := bridge.ReceivedItem(it, feed.Grant{Item: r.Item, Fields: fields, Grade: r.Grade}, bus, dept)
		if r.As != "" {
			recv.Code = r.As
		}
		if err := writeJSON(filepath.Join(dir, "items", recv.Code+".json"), recv); err != nil {
			return err
		}
	}
	_, err := catalog.Load(os.DirFS(dir))
	return err
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
