package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeRegion writes a small catalog of bus name with the list chuanyu
// shared with partner (from the catalog package's valid fixture): it
// offers its penalties, receives the partner's when receive is set.
func writeRegion(t *testing.T, name, partner string, receive bool) string {
	t.Helper()
	dir := t.TempDir()
	src := "../../../model/catalog/testdata/valid"
	read := func(p string) map[string]any {
		b, err := os.ReadFile(filepath.Join(src, p))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}
	write := func(p string, v any) {
		b, _ := json.Marshal(v)
		_ = os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := read("catalog.json")
	c["bus"] = name
	c["departments"] = append(c["departments"].([]any), map[string]any{"code": partner + "_bus", "name": partner, "principal": "bus." + partner, "bus": partner})
	write("catalog.json", c)
	write("items/legal_person.penalty.json", read("items/legal_person.penalty.json"))
	l := map[string]any{"code": "chuanyu", "name": "川渝共享清单", "partner": partner, "department": partner + "_bus", "agreement": "川渝政务数据共享合作协议",
		"offers": []string{"legal_person.penalty"}, "approved": map[string]any{"by": c["authority"], "on": "2026-11-30"}}
	if receive {
		recv := read("items/legal_person.penalty.json")
		code := "legal_person.penalty_" + partner
		recv["code"], recv["source"] = code, partner+"_bus"
		recv["upstream"] = map[string]any{"bus": partner, "item": "legal_person.penalty"}
		recv["fields"] = append(recv["fields"].([]any), map[string]any{"name": "upstream", "title": "上游来源", "type": "string", "required": true, "grade": 1})
		write("items/"+code+".json", recv)
		l["receives"] = []string{code}
	}
	write("lists/chuanyu.json", l)
	return dir
}

// TestCatalogLists: jutong catalog lists prints a shared list, and with the
// partner's catalog says that both sides agree, or names what one side
// offers that the other does not receive (exit status 1).
func TestCatalogLists(t *testing.T) {
	cq, sc := writeRegion(t, "chongqing", "sichuan", true), writeRegion(t, "sichuan", "chongqing", true)
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), []string{"catalog", "lists", "--catalog", cq, "--partner", sc}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"chuanyu  川渝共享清单  with sichuan", "offers    legal_person.penalty", "receives  legal_person.penalty_sichuan (its legal_person.penalty)", "chongqing and sichuan agree"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("no %q in:\n%s", want, out.String())
		}
	}
	out.Reset()
	errOut.Reset()
	scNot := writeRegion(t, "sichuan", "chongqing", false)
	if code := Run(context.Background(), []string{"catalog", "lists", "--catalog", cq, "--partner", scNot}, &out, &errOut); code != 1 ||
		!strings.Contains(out.String(), "DISAGREE chuanyu: chongqing offers [legal_person.penalty], sichuan receives []") {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
}

// TestCatalogDuplicatesAndNegative: the catalog's duplicate candidates
// (without a database: the catalog's evidence) and the negative list, as
// printed.
func TestCatalogDuplicatesAndNegative(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), []string{"catalog", "duplicates", "--most", "200"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "population.social_insurance.name (hrss)") || !strings.Contains(out.String(), "same title 姓名") {
		t.Fatalf("duplicates:\n%s", out.String())
	}
	out.Reset()
	if code := Run(context.Background(), []string{"catalog", "negative"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "population.criminal_record") || !strings.Contains(out.String(), "《中华人民共和国刑事诉讼法》") {
		t.Fatalf("negative:\n%s", out.String())
	}
}
