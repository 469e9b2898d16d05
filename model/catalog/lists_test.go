package catalog

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// region builds a small catalog of bus name, neighbour partner, from the
// valid fixture: its own penalties, the partner's received, and the shared
// list chuanyu (offers its penalties, receives the partner's); edit
// changes the list before it is loaded.
func region(t *testing.T, name, partner string, edit func(l map[string]any)) (*Catalog, error) {
	t.Helper()
	base, _ := os.ReadFile(filepath.Join("testdata", "valid", "catalog.json"))
	item, _ := os.ReadFile(filepath.Join("testdata", "valid", "items", "legal_person.penalty.json"))
	var c, own, recv map[string]any
	_ = json.Unmarshal(base, &c)
	_ = json.Unmarshal(item, &own)
	_ = json.Unmarshal(item, &recv)
	c["bus"] = name
	c["departments"] = append(c["departments"].([]any), map[string]any{"code": partner + "_bus", "name": partner, "principal": "bus." + partner, "bus": partner})
	recv["code"] = "legal_person.penalty_" + partner
	recv["source"] = partner + "_bus"
	recv["upstream"] = map[string]any{"bus": partner, "item": "legal_person.penalty"}
	recv["fields"] = append(recv["fields"].([]any), map[string]any{"name": "upstream", "title": "上游来源", "type": "string", "required": true, "grade": 1})
	l := map[string]any{"code": "chuanyu", "name": "川渝共享清单", "partner": partner, "department": partner + "_bus",
		"agreement": "川渝政务数据共享合作协议（2020）", "offers": []string{"legal_person.penalty"}, "receives": []string{"legal_person.penalty_" + partner},
		"approved": map[string]any{"by": c["authority"], "on": "2026-11-30"}}
	if edit != nil {
		edit(l)
	}
	fs := fstest.MapFS{}
	for path, v := range map[string]any{"catalog.json": c, "items/legal_person.penalty.json": own,
		"items/legal_person.penalty_" + partner + ".json": recv, "lists/chuanyu.json": l} {
		b, _ := json.Marshal(v)
		fs[path] = &fstest.MapFile{Data: b}
	}
	return Load(fs)
}

// TestSharedLists: a list shared by two regions' buses, each side's
// approval in its own catalog; the two sides agree, and each disagreement
// is named; a broken list is refused with its rule.
func TestSharedLists(t *testing.T) {
	cq, err := region(t, "chongqing", "sichuan", nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := region(t, "sichuan", "chongqing", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := CompareLists(cq, sc); len(d) != 0 {
		t.Fatalf("the two sides disagree: %v", d)
	}
	if partner, offering := cq.OffersTo("sichuan_bus", "legal_person.penalty"); !partner || len(offering) != 1 {
		t.Fatalf("offers to sichuan: %v %v", partner, offering)
	}
	if partner, offering := cq.OffersTo("sichuan_bus", "legal_person.penalty_sichuan"); !partner || len(offering) != 0 {
		t.Fatalf("sichuan may apply for what it sent: %v", offering)
	}
	if partner, _ := cq.OffersTo("tax", "legal_person.penalty"); partner {
		t.Fatal("tax is no partner")
	}
	// Sichuan no longer receives: Chongqing's offer is not matched.
	scLess, err := region(t, "sichuan", "chongqing", func(l map[string]any) { l["offers"] = []string{} })
	if err != nil {
		t.Fatal(err)
	}
	if d := CompareLists(cq, scLess); len(d) != 1 || !strings.Contains(d[0], "sichuan offers []") {
		t.Fatalf("a one-sided list: %v", d)
	}
	for name, tc := range map[string]struct {
		edit func(map[string]any)
		want string
	}{
		"not the authority":   {func(l map[string]any) { l["approved"] = map[string]any{"by": "tax", "on": "2026-11-30"} }, "the data authority (market_supervision) approves"},
		"no agreement":        {func(l map[string]any) { l["agreement"] = " " }, "needs the agreement"},
		"passing a received":  {func(l map[string]any) { l["offers"] = []string{"legal_person.penalty_sichuan"} }, "a received item is offered by its source bus"},
		"receiving own":       {func(l map[string]any) { l["receives"] = []string{"legal_person.penalty"} }, "must be an item received from sichuan"},
		"unknown item":        {func(l map[string]any) { l["offers"] = []string{"legal_person.nothing"} }, `offers "legal_person.nothing": no such item`},
		"partner is this bus": {func(l map[string]any) { l["partner"] = "chongqing" }, "must be another bus's name"},
		"bad date":            {func(l map[string]any) { l["approved"] = map[string]any{"by": "market_supervision", "on": "30/11/2026"} }, "is not YYYY-MM-DD"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := region(t, "chongqing", "sichuan", tc.edit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestNegativeList: the sample's negative list holds each item not shared
// (criminal records) and each shared one not opened, with its legal basis,
// which the catalog requires of each.
func TestNegativeList(t *testing.T) {
	c, err := Sample()
	if err != nil {
		t.Fatal(err)
	}
	neg := c.NegativeList()
	byItem := map[string]Negative{}
	for _, n := range neg {
		if strings.TrimSpace(n.LegalBasis) == "" {
			t.Errorf("%s is withheld with no legal basis", n.Item)
		}
		byItem[n.Item] = n
	}
	if n := byItem["population.criminal_record"]; n.Withheld != "shared" {
		t.Fatalf("criminal records: %+v", n)
	}
	for _, it := range c.Items {
		_, listed := byItem[it.Code]
		if listed != (it.Share == ShareNone || it.Open == ShareNone) {
			t.Errorf("%s (share %s, open %s): listed %v", it.Code, it.Share, it.Open, listed)
		}
	}
}
