package ident

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func TestCitizenID(t *testing.T) {
	// The worked example of GB 11643-1999 (Beijing, born 1949-12-31).
	if err := CheckCitizenID("11010519491231002X", now); err != nil {
		t.Fatalf("standard example rejected: %v", err)
	}
	cases := []struct{ id, rule string }{
		{"110105194912310021", "citizen_id.checksum"},
		{"11010519491231002", "citizen_id.length"},
		{"1101051949123100A2", "citizen_id.digits"},
		{"110105194913310028", "citizen_id.birth_date"},
		{"110105203012310024", "citizen_id.birth_date"},
		{"000105194912310021", "citizen_id.division"},
	}
	for _, c := range cases {
		err := CheckCitizenID(c.id, now)
		var ie *Error
		if !errors.As(err, &ie) || ie.Rule != c.rule {
			t.Errorf("%s: got %v, want rule %s", c.id, err, c.rule)
		}
	}
}

func TestUSCC(t *testing.T) {
	// A published code (Huawei Technologies Co., Ltd., Shenzhen).
	if err := CheckUSCC("914403001922038216"); err != nil {
		t.Fatalf("real code rejected: %v", err)
	}
	cases := []struct{ code, rule string }{
		{"914403001922038217", "uscc.checksum"},
		{"91440300192203821", "uscc.length"},
		{"9144030019220382I6", "uscc.charset"},
		{"910003001922038216", "uscc.division"},
	}
	for _, c := range cases {
		err := CheckUSCC(c.code)
		var ie *Error
		if !errors.As(err, &ie) || ie.Rule != c.rule {
			t.Errorf("%s: got %v, want rule %s", c.code, err, c.rule)
		}
	}
}

func TestGeneratorsPassChecks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		d := ChongqingDivisions[r.IntN(len(ChongqingDivisions))]
		if u := NewUSCC(r, d); CheckUSCC(u) != nil {
			t.Fatalf("generated USCC %s fails: %v", u, CheckUSCC(u))
		}
		birth := time.Date(1940+r.IntN(80), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
		if id := NewCitizenID(r, d, birth, r.IntN(2) == 0); CheckCitizenID(id, now) != nil {
			t.Fatalf("generated ID %s fails: %v", id, CheckCitizenID(id, now))
		}
	}
}

// TestDivisionList: division codes are checked against the shipped GB/T
// 2260 list: a code that never existed is refused (the three that only
// the form check passed before), one since abolished is accepted (records
// name the divisions of their time), and so is a current one. Citizen IDs
// accept a county of a known prefecture (they predate the list's history);
// USCCs (issued since 2015) do not.
func TestDivisionList(t *testing.T) {
	for _, code := range []string{"189999", "500199", "829999", "5001031"} {
		var e *Error
		if err := CheckDivision(code); !errors.As(err, &e) || (e.Rule != "division.unknown" && e.Rule != "division.length") {
			t.Errorf("CheckDivision(%s) = %v", code, err)
		}
	}
	for code, want := range map[string]string{"500103": "渝中区", "500152": "潼南区", "500223": "潼南县", "500000": "重庆市", "110101": "东城区"} {
		if err := CheckDivision(code); err != nil {
			t.Errorf("CheckDivision(%s) = %v", code, err)
		}
		if d, ok := LookupDivision(code); !ok || d.Name != want {
			t.Errorf("LookupDivision(%s) = %+v", code, d)
		}
	}
	if d, _ := LookupDivision("500223"); d.Current() || d.Last != "201410" {
		t.Errorf("潼南县 (made a district in 2015): %+v", d)
	}
	if d, _ := LookupDivision("500152"); !d.Current() {
		t.Errorf("潼南区: %+v", d)
	}
	id := func(div string) string {
		c, err := CitizenIDCheckChar(div + "19800101001")
		if err != nil {
			t.Fatal(err)
		}
		return div + "19800101001" + string(c)
	}
	for div, ok := range map[string]bool{"500103": true, "500223": true, "500199": true, "189999": false, "829999": false, "500999": false} {
		err := CheckCitizenID(id(div), now)
		if (err == nil) != ok {
			t.Errorf("a citizen ID issued in %s: %v", div, err)
		}
		if !ok && !strings.Contains(fmt.Sprint(err), "citizen_id.division") {
			t.Errorf("a citizen ID issued in %s: %v, want rule citizen_id.division", div, err)
		}
	}
	uscc := func(div string) string {
		first := "91" + div + "MA5U7CQ96"
		c, err := USCCCheckChar(first)
		if err != nil {
			t.Fatal(err)
		}
		return first + string(c)
	}
	for div, ok := range map[string]bool{"500000": true, "500103": true, "500199": false, "189999": false} {
		if err := CheckUSCC(uscc(div)); (err == nil) != ok {
			t.Errorf("a USCC registered in %s: %v", div, err)
		}
	}
}
