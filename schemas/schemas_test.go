package schemas_test

import (
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

var update = flag.Bool("update", false, "rewrite schemas/avsc/*.avsc from the catalog")

// TestAvscFilesMatchCatalog: the checked-in .avsc files are exactly what the
// catalog generates. After a catalog change run: go test ./schemas -update
func TestAvscFilesMatchCatalog(t *testing.T) {
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("avsc", it.Code+".avsc")
		want[filepath.Base(path)] = true
		if *update {
			if err := os.WriteFile(path, []byte(s.JSON+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run: go test ./schemas -update)", err)
		}
		if string(got) != s.JSON+"\n" {
			t.Errorf("%s differs from what the catalog generates (run: go test ./schemas -update)", path)
		}
	}
	files, _ := filepath.Glob(filepath.Join("avsc", "*.avsc"))
	for _, f := range files {
		if !want[filepath.Base(f)] {
			t.Errorf("%s has no catalog item", f)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cat, _ := catalog.Sample()
	s, err := schemas.For(cat.Item("legal_person.enterprise_registration"))
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
	in := &schemas.Event{
		ID: "0b0a1d6e-5c8f-4f7e-8a4e-2d1c0b9a8f7e", Op: schemas.OpUpdate, Key: "91500000MA5U7CQ96X",
		Source:    schemas.Source{Department: "market_supervision", System: "登记系统", Adapter: "sdk"},
		EventTime: ts, PublishTime: ts.Add(time.Second),
		Data: map[string]any{
			"uscc": "91500000MA5U7CQ96X", "name": "重庆测试有限公司", "legal_representative": "张三",
			"legal_representative_id": nil, "enterprise_type": "JOINT_STOCK",
			"registered_capital": big.NewRat(-5, 10000), "currency": "USD",
			"established_on": time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC), "status": "REVOKED",
			"address": "重庆市", "division_code": "500103", "industry_code": "I6510",
			"business_scope": "软件", "employees": int64(1 << 40), "approved_at": ts,
		},
	}
	b, err := s.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	framed := schemas.Frame(nil, 42, b)
	id, payload, err := schemas.Unframe(framed)
	if err != nil || id != 42 {
		t.Fatalf("unframe: %d %v", id, err)
	}
	out, err := schemas.Decode(s.Avro, payload)
	if err != nil {
		t.Fatal(err)
	}
	if out.Data["registered_capital"].(*big.Rat).Cmp(big.NewRat(-5, 10000)) != 0 {
		t.Fatalf("decimal: %v", out.Data["registered_capital"])
	}
	out.Data["registered_capital"] = in.Data["registered_capital"]
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	del := &schemas.Event{ID: in.ID, Op: schemas.OpDelete, Key: in.Key, Source: in.Source, EventTime: ts, PublishTime: ts}
	b, err = s.Encode(del)
	if err != nil {
		t.Fatal(err)
	}
	if out, err = schemas.Decode(s.Avro, b); err != nil || out.Data != nil || out.Op != schemas.OpDelete {
		t.Fatalf("delete round trip: %+v %v", out, err)
	}
	if _, _, err := schemas.Unframe([]byte{1, 0, 0, 0, 1, 2}); err == nil {
		t.Fatal("a wrong magic byte must not unframe")
	}
}
