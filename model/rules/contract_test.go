package rules_test

import (
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/schemas"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func valid() *schemas.Event {
	return &schemas.Event{
		ID: "0b0a1d6e-5c8f-4f7e-8a4e-2d1c0b9a8f7e", Op: schemas.OpCreate, Key: "91500000MA5U7CQ96X",
		Data: map[string]any{
			"uscc": "91500000MA5U7CQ96X", "name": "重庆测试有限公司", "legal_representative": "张三",
			"legal_representative_id": "11010519491231002X", "enterprise_type": "JOINT_STOCK",
			"registered_capital": big.NewRat(123456789, 10000), "currency": "CNY",
			"established_on": time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC), "status": "EXISTING",
			"address": "重庆市渝中区", "division_code": "500103", "industry_code": "I6510",
			"business_scope": nil, "employees": int64(3), "approved_at": now.Add(-time.Hour),
		},
	}
}

func TestContract(t *testing.T) {
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	it := cat.Item("legal_person.enterprise_registration")
	cases := []struct {
		name, dept, field, rule string
		mutate                  func(e *schemas.Event)
	}{
		{"valid", "market_supervision", "", "", func(*schemas.Event) {}},
		{"valid delete", "market_supervision", "", "", func(e *schemas.Event) { e.Op, e.Data = schemas.OpDelete, nil }},
		{"not the source", "big_data", "", "source.owner", func(*schemas.Event) {}},
		{"bad op", "market_supervision", "", "op", func(e *schemas.Event) { e.Op = "UPSERT" }},
		{"no event id", "market_supervision", "", "event_id.required", func(e *schemas.Event) { e.ID = "" }},
		{"empty key", "market_supervision", "uscc", "key.required", func(e *schemas.Event) { e.Key = " " }},
		{"delete with data", "market_supervision", "", "delete.data", func(e *schemas.Event) { e.Op = schemas.OpDelete }},
		{"update without data", "market_supervision", "", "data.required", func(e *schemas.Event) { e.Op, e.Data = schemas.OpUpdate, nil }},
		{"missing required", "market_supervision", "name", "required", func(e *schemas.Event) { delete(e.Data, "name") }},
		{"blank", "market_supervision", "address", "blank", func(e *schemas.Event) { e.Data["address"] = " \t" }},
		{"NUL in text", "market_supervision", "name", "text.nul", func(e *schemas.Event) { e.Data["name"] = "重庆\x00公司" }},
		{"invalid UTF-8", "market_supervision", "address", "text.utf8", func(e *schemas.Event) { e.Data["address"] = "重庆市\xff\xfe路" }},
		{"NUL in the event id", "market_supervision", "event_id", "text.nul", func(e *schemas.Event) { e.ID = "a\x00b" }},
		{"invalid UTF-8 key", "market_supervision", "uscc", "text.utf8", func(e *schemas.Event) { e.Key = "9150\xc3" }},
		{"long event id", "market_supervision", "event_id", "event_id.length", func(e *schemas.Event) { e.ID = strings.Repeat("x", 129) }},
		{"unknown field", "market_supervision", "color", "schema.unknown_field", func(e *schemas.Event) { e.Data["color"] = "red" }},
		{"wrong type", "market_supervision", "employees", "schema.type", func(e *schemas.Event) { e.Data["employees"] = "3" }},
		{"bad enum", "market_supervision", "status", "schema.enum", func(e *schemas.Event) { e.Data["status"] = "ACTIVE" }},
		{"too many decimals", "market_supervision", "registered_capital", "decimal.scale", func(e *schemas.Event) { e.Data["registered_capital"] = big.NewRat(1, 3) }},
		{"too many digits", "market_supervision", "registered_capital", "decimal.precision", func(e *schemas.Event) {
			e.Data["registered_capital"] = new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(14), nil))
		}},
		{"negative capital", "market_supervision", "registered_capital", "range.min", func(e *schemas.Event) { e.Data["registered_capital"] = big.NewRat(-1, 100) }},
		{"negative employees", "market_supervision", "employees", "range.min", func(e *schemas.Event) { e.Data["employees"] = int64(-1) }},
		{"uscc checksum", "market_supervision", "uscc", "uscc.checksum", func(e *schemas.Event) { e.Key, e.Data["uscc"] = "91500000MA5U7CQ96B", "91500000MA5U7CQ96B" }},
		{"uscc length", "market_supervision", "uscc", "uscc.length", func(e *schemas.Event) { e.Key, e.Data["uscc"] = "91500000MA5U7CQ96", "91500000MA5U7CQ96" }},
		{"citizen id checksum", "market_supervision", "legal_representative_id", "citizen_id.checksum", func(e *schemas.Event) { e.Data["legal_representative_id"] = "110105194912310021" }},
		{"citizen id birth date", "market_supervision", "legal_representative_id", "citizen_id.birth_date", func(e *schemas.Event) { e.Data["legal_representative_id"] = "110105194902300025" }},
		{"division", "market_supervision", "division_code", "division.province", func(e *schemas.Event) { e.Data["division_code"] = "990103" }},
		{"future date", "market_supervision", "established_on", "not_future", func(e *schemas.Event) { e.Data["established_on"] = now.AddDate(0, 0, 1) }},
		{"event time ahead", "market_supervision", "event_time", "event_time.future", func(e *schemas.Event) { e.EventTime = now.Add(rules.EventTimeSkew + time.Second) }},
		{"event time within the skew", "market_supervision", "", "", func(e *schemas.Event) { e.EventTime = now.Add(rules.EventTimeSkew) }},
		{"event time a year back (kept, counted as backdated)", "market_supervision", "", "", func(e *schemas.Event) { e.EventTime = now.AddDate(-1, 0, 0) }},
		{"key differs from record", "market_supervision", "uscc", "key.match", func(e *schemas.Event) { e.Key = "914403001922038216" }},
		{"delete with bad key", "market_supervision", "uscc", "uscc.checksum", func(e *schemas.Event) { e.Op, e.Data, e.Key = schemas.OpDelete, nil, "914403001922038217" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := valid()
			c.mutate(e)
			v := rules.Check(it, c.dept, e, now)
			if c.rule == "" {
				if v != nil {
					t.Fatalf("valid event refused: %v", v)
				}
				return
			}
			if v == nil {
				t.Fatalf("accepted, want rule %s on field %s", c.rule, c.field)
			}
			if v.Rule != c.rule || v.Field != c.field || v.Item != it.Code {
				t.Fatalf("got %v (rule %s field %s), want rule %s field %s", v, v.Rule, v.Field, c.rule, c.field)
			}
		})
	}
}
