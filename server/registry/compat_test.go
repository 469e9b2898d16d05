package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	hregistry "github.com/hamba/avro/v2/registry"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/registry"
)

const subject = "legal_person.enterprise_registration-value"

// evolve returns the item's schema with the Value record's fields changed by fn.
func evolve(t *testing.T, base string, fn func(fields []any) []any) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(base), &doc); err != nil {
		t.Fatal(err)
	}
	for _, f := range doc["fields"].([]any) {
		f := f.(map[string]any)
		if f["name"] == "data" {
			value := f["type"].([]any)[1].(map[string]any)
			value["fields"] = fn(value["fields"].([]any))
		}
	}
	b, _ := json.Marshal(doc)
	return string(b)
}

func baseSchema(t *testing.T) *schemas.Schema {
	cat, _ := catalog.Sample()
	s, err := schemas.For(cat.Item("legal_person.enterprise_registration"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEvolutionOverHTTP(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, rc := open(t, c)
	ctx := context.Background()
	v1 := baseSchema(t).JSON
	id1, err := rc.RegisterSchema(ctx, subject, sr.Schema{Schema: v1}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	// The default is BACKWARD_TRANSITIVE.
	if res := rc.Compatibility(ctx); res[0].Err != nil || res[0].Level != sr.CompatBackwardTransitive {
		t.Fatalf("global level %+v", res[0])
	}

	// A new optional field with a default: compatible, new version and id.
	v2 := evolve(t, v1, func(f []any) []any {
		return append(f, map[string]any{"name": "website", "type": []any{"null", "string"}, "default": nil})
	})
	id2, err := rc.RegisterSchema(ctx, subject, sr.Schema{Schema: v2}, -1, -1)
	if err != nil || id2 == id1 {
		t.Fatalf("compatible evolution: id %d (v1 %d), %v", id2, id1, err)
	}
	if vs, _ := rc.SubjectVersions(ctx, subject); len(vs) != 2 {
		t.Fatalf("versions %v", vs)
	}

	// A new required field without a default: refused, naming the field.
	bad := evolve(t, v2, func(f []any) []any {
		return append(f, map[string]any{"name": "tax_number", "type": "string"})
	})
	_, err = rc.RegisterSchema(ctx, subject, sr.Schema{Schema: bad}, -1, -1)
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 409 || !strings.Contains(re.Message, "data.tax_number") || !strings.Contains(re.Message, "without a default") {
		t.Fatalf("incompatible evolution: %v", err)
	}
	// A changed type: refused, naming the field and both types.
	retyped := evolve(t, v2, func(f []any) []any {
		for _, x := range f {
			if x.(map[string]any)["name"] == "employees" {
				x.(map[string]any)["type"] = []any{"null", "string"}
			}
		}
		return f
	})
	res, err := rc.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subject, -1, sr.Schema{Schema: retyped})
	if err != nil || res.Is || len(res.Messages) == 0 || !strings.Contains(res.Messages[0], "data.employees") {
		t.Fatalf("check of a retyped field: %+v %v", res, err)
	}
	// Removing a field without a default breaks FORWARD only: set FULL on
	// the subject and it is refused; BACKWARD alone would accept it.
	removed := evolve(t, v2, func(f []any) []any {
		var out []any
		for _, x := range f {
			if x.(map[string]any)["name"] != "industry_code" {
				out = append(out, x)
			}
		}
		return out
	})
	if r := rc.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}, subject); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if _, err := rc.RegisterSchema(ctx, subject, sr.Schema{Schema: removed}, -1, -1); !errors.As(err, &re) || re.StatusCode != 409 || !strings.Contains(re.Message, "data.industry_code") {
		t.Fatalf("FULL must refuse a removed required field: %v", err)
	}
	if r := rc.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if _, err := rc.RegisterSchema(ctx, subject, sr.Schema{Schema: removed}, -1, -1); err != nil {
		t.Fatalf("BACKWARD accepts a removed field: %v", err)
	}
	// NONE accepts anything.
	if r := rc.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, subject); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if _, err := rc.RegisterSchema(ctx, subject, sr.Schema{Schema: bad}, -1, -1); err != nil {
		t.Fatalf("NONE must accept: %v", err)
	}
	if r := rc.ResetCompatibility(ctx, subject); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if r := rc.Compatibility(ctx, subject); r[0].Err == nil {
		t.Fatalf("subject level still set after reset: %+v", r[0])
	}
	// Soft then permanent delete of the last version.
	vs, _ := rc.SubjectVersions(ctx, subject)
	last := vs[len(vs)-1]
	if err := rc.DeleteSchema(ctx, subject, last, sr.HardDelete); !errors.As(err, &re) || re.ErrorCode != 40407 {
		t.Fatalf("permanent delete before soft: %v", err)
	}
	if err := rc.DeleteSchema(ctx, subject, last, sr.SoftDelete); err != nil {
		t.Fatal(err)
	}
	if err := rc.DeleteSchema(ctx, subject, last, sr.HardDelete); err != nil {
		t.Fatal(err)
	}
	if vs2, _ := rc.SubjectVersions(ctx, subject); len(vs2) != len(vs)-1 {
		t.Fatalf("after delete %v, before %v", vs2, vs)
	}
}

// TestHambaClientDecodesJutongRecords: hamba/avro's registry client reads
// what Jutong registered and decodes a Confluent-framed record Jutong wrote.
func TestHambaClientDecodesJutongRecords(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, url := openURL(t, c)
	ctx := context.Background()
	hc, err := hregistry.NewClient(url, hregistry.WithBasicAuth(adminUser, adminPass))
	if err != nil {
		t.Fatal(err)
	}
	s := baseSchema(t)
	id, _, err := hc.CreateSchema(ctx, subject, s.JSON)
	if err != nil {
		t.Fatal(err)
	}
	if again, _, err := hc.IsRegistered(ctx, subject, s.JSON); err != nil || again != id {
		t.Fatalf("IsRegistered: %d %v, want %d", again, err, id)
	}
	if ok, err := hc.IsCompatible(ctx, subject, s.JSON); err != nil || !ok {
		t.Fatalf("IsCompatible with itself: %v %v", ok, err)
	}
	if lvl, err := hc.GetGlobalCompatibilityLevel(ctx); err != nil || lvl != string(registry.DefaultLevel) {
		t.Fatalf("global level %q %v", lvl, err)
	}
	// A record as Jutong's publisher writes it.
	ev := &schemas.Event{ID: "0b0a1d6e-5c8f-4f7e-8a4e-2d1c0b9a8f7e", Op: schemas.OpDelete, Key: "91500000MA5U7CQ96X",
		Source: schemas.Source{Department: "market_supervision", System: "s", Adapter: "sdk"}}
	payload, err := s.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	framed := schemas.Frame(nil, id, payload)
	// Decode it the way a third-party consumer would: id from the frame,
	// schema from the registry by id.
	gotID, body, err := schemas.Unframe(framed)
	if err != nil {
		t.Fatal(err)
	}
	writer, err := hc.GetSchema(ctx, gotID)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := avro.Unmarshal(writer, body, &out); err != nil {
		t.Fatal(err)
	}
	if out["key"] != ev.Key || out["op"] != "DELETE" || out["data"] != nil {
		t.Fatalf("decoded %v", out)
	}
}
