package ident

import (
	"errors"
	"math/rand/v2"
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
