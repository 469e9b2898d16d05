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
	if base == nil {
		base = catalog.SampleFS()
	}
	if err := os.CopyFS(dir, base); err != nil {
		return fmt.Errorf("federation: copy the catalog: %w", err)
	}
	path := filepath.Join(dir, "catalog.json")
	var doc map[string]any
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	doc["bus"] = CityBus
	depts, _ := doc["departments"].([]any)
	for _, d := range districts {
		code := DistrictDepartment(d)
		depts = append(depts, map[string]any{"code": code, "name": d + "区大数据局", "name_en": "District " + d + " (its bus)", "principal": "dept." + code})
	}
	doc["departments"] = depts
	if td, ok := doc["topic_defaults"].(map[string]any); ok && replication > 0 {
		td["replication_factor"] = replication
	}
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
	for _, r := range receives {
		up := city.Item(r.Item)
		if up == nil {
			return fmt.Errorf("federation: the city has no item %s", r.Item)
		}
		for _, f := range r.Fields {
			if up.Field(f) == nil {
				return fmt.Errorf("federation: %s has no field %q", r.Item, f)
			}
		}
		fields := r.Fields
		if len(fields) == 0 { // as an application: every field
			for _, f := range up.Fields {
				fields = append(fields, f.Name)
			}
		}
		it := bridge.ReceivedItem(up, feed.Grant{Item: r.Item, Fields: fields, Grade: r.Grade}, CityBus, CityDepartment)
		if err := writeJSON(filepath.Join(dir, "items", it.Code+".json"), it); err != nil {
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
