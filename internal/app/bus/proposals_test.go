package bus_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/server/duplicates"
	"github.com/jutong/jutong/server/proposals"
)

// TestProposals: the catalog as a governed workflow, through the API as
// officers. Market supervision proposes an optional field for its
// enterprises; the authority approves it: version 2, kept with who
// proposed and approved it, diffable, its schema registered at once, and
// after a restart the PostgreSQL table has the column. Refused with the
// rule and the field named: another department's item, a grade lowered, a
// field renamed, a proposal failing the catalog's check, a review by
// anyone but the authority.
func TestProposals(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	cfg := bus.Config{DataDir: t.TempDir(), KafkaPorts: freePorts(t, 3), PostgresDSN: pgDSN, ControlEvery: time.Hour, ReadAuditEvery: time.Hour}
	b := startBus(t, cfg)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = b.Close(context.Background())
		}
	})
	cc := controlClient{t, b.APIURL(), b}
	const enterprise = "legal_person.enterprise_registration"
	raw, err := os.ReadFile("../../../model/catalog/data/items/" + enterprise + ".json")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(change func(it map[string]any)) json.RawMessage {
		var it map[string]any
		_ = json.Unmarshal(raw, &it)
		change(it)
		out, _ := json.Marshal(it)
		return out
	}
	fieldOf := func(it map[string]any, name string) map[string]any {
		for _, f := range it["fields"].([]any) {
			if f.(map[string]any)["name"] == name {
				return f.(map[string]any)
			}
		}
		t.Fatalf("no field %s", name)
		return nil
	}
	addWebsite := edit(func(it map[string]any) {
		it["fields"] = append(it["fields"].([]any), map[string]any{"name": "website", "title": "企业网站", "type": "string", "grade": 1})
	})
	type refusal struct {
		Error, Rule, Field string
	}
	for name, tc := range map[string]struct {
		dept  string
		item  json.RawMessage
		code  int
		rule  string
		field string
	}{
		"another department's item": {"tax", addWebsite, 403, "", ""},
		"a grade lowered":           {"market_supervision", edit(func(it map[string]any) { fieldOf(it, "legal_representative_id")["grade"] = 1 }), 422, "grade.lowered", "legal_representative_id"},
		"a field renamed": {"market_supervision", edit(func(it map[string]any) {
			fieldOf(it, "employees")["name"] = "staff"
		}), 422, "evolution.removed", "employees"},
		"failing the catalog's check": {"market_supervision", edit(func(it map[string]any) {
			it["share"], it["legal_basis"] = "none", ""
		}), 422, "catalog.check", ""},
		"a required field added": {"market_supervision", edit(func(it map[string]any) {
			it["fields"] = append(it["fields"].([]any), map[string]any{"name": "website", "title": "企业网站", "type": "string", "grade": 1, "required": true})
		}), 422, "evolution.required", "website"},
	} {
		t.Run(name, func(t *testing.T) {
			var r refusal
			if code := cc.call(tc.dept, "POST", "/v1/proposals", proposals.Request{Item: tc.item, Reason: "测试"}, &r); code != tc.code || r.Rule != tc.rule || r.Field != tc.field {
				t.Fatalf("%d %+v, want %d rule %q field %q", code, r, tc.code, tc.rule, tc.field)
			}
		})
	}

	var p proposals.Proposal
	if code := cc.call("market_supervision", "POST", "/v1/proposals", proposals.Request{Item: addWebsite, Reason: "登记企业网站，便于线上核验"}, &p); code != 201 || p.State != proposals.Pending || p.Base != 1 {
		t.Fatalf("propose: %d %+v", code, p)
	}
	if !slices.Contains(p.Changes, "+ field website string grade 1") || !p.Due.After(p.Proposed) || len(p.Duplicates) != 0 {
		t.Fatalf("the proposal: %+v", p)
	}
	// Health proposes its own register of enterprises' names: the names
	// market supervision collects already, shown to the reviewer.
	dupItem, _ := json.Marshal(map[string]any{"code": "legal_person.health_units", "name": "医疗机构名录", "name_en": "Health units", "source": "health",
		"base": "legal_person", "key": "uscc", "share": "conditional", "open": "none", "open_legal_basis": "内部管理", "update_frequency": "monthly",
		"fields": []map[string]any{{"name": "uscc", "title": "统一社会信用代码", "type": "string", "required": true, "rules": []string{"uscc"}, "grade": 1},
			{"name": "name", "title": "企业名称", "type": "string", "grade": 1}}})
	var dp proposals.Proposal
	if code := cc.call("health", "POST", "/v1/proposals", proposals.Request{Item: dupItem, Reason: "医疗机构监管"}, &dp); code != 201 || len(dp.Duplicates) == 0 ||
		!slices.ContainsFunc(dp.Duplicates, func(c duplicates.Candidate) bool {
			return (c.A.Item == enterprise || c.B.Item == enterprise) && c.A.Field == "name" && c.B.Field == "name"
		}) {
		t.Fatalf("a proposal collecting enterprises' names again: %d %+v", code, dp.Duplicates)
	}
	if code := cc.call("market_supervision", "POST", "/v1/proposals/"+p.ID+"/approve", nil, nil); code != 403 {
		t.Fatalf("the source approving its own proposal: %d", code)
	}
	if code := cc.call("big_data", "POST", "/v1/proposals/"+p.ID+"/refuse", map[string]string{}, nil); code != 422 {
		t.Fatalf("a refusal without a reason: %d", code)
	}
	if code := cc.call("big_data", "POST", "/v1/proposals/"+p.ID+"/approve", map[string]string{"reason": "同意"}, &p); code != 200 || p.State != proposals.Approved || p.Version != 2 || p.ApplyError != "" {
		t.Fatalf("approve: %d %+v", code, p)
	}
	var hist []proposals.Version
	if code := cc.call("tax", "GET", "/v1/catalog/items/"+enterprise+"/history", nil, &hist); code != 200 || len(hist) != 2 ||
		hist[1].Version != 2 || hist[1].ProposedBy != "market_supervision" || hist[1].ApprovedBy != "big_data" || !slices.ContainsFunc(hist[1].Def.Fields, func(f *catalog.Field) bool { return f.Name == "website" }) {
		t.Fatalf("history: %d %+v", code, hist)
	}
	var diff struct{ Changes []string }
	if code := cc.call("tax", "GET", "/v1/catalog/items/"+enterprise+"/diff?from=1&to=2", nil, &diff); code != 200 || !slices.Equal(diff.Changes, []string{"+ field website string grade 1"}) {
		t.Fatalf("diff: %d %+v", code, diff)
	}
	// Its schema is registered at once: version 2 of the subject.
	if vs, err := b.Registry.Versions(enterprise + "-value"); err != nil || len(vs) != 2 {
		t.Fatalf("the registry's versions of %s: %v %v", enterprise, vs, err)
	}
	// A proposal made from version 1 would drop the new field: refused.
	var stale refusal
	if code := cc.call("market_supervision", "POST", "/v1/proposals", proposals.Request{Item: edit(func(it map[string]any) {
		it["update_frequency"] = "daily"
	}), Reason: "改为每日"}, &stale); code != 422 || stale.Rule != "evolution.removed" || stale.Field != "website" {
		t.Fatalf("a proposal from version 1: %d %+v", code, stale)
	}

	// After a restart, the bus runs version 2: the table has the column.
	_ = b.Close(context.Background())
	closed = true
	b = startBus(t, cfg)
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if it := b.Proposals.Catalog().Item(enterprise); it.Field("website") == nil {
		t.Fatal("the restarted bus runs version 1")
	}
	conn, err := pgx.Connect(context.Background(), b.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.columns WHERE table_schema = 'legal_person' AND table_name = 'enterprise_registration' AND column_name = 'website'`).Scan(&n); err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no column website after the restart")
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestPortalProposals: through the portal's pages, with a raw client and
// its session cookie: market supervision proposes an optional field for its
// business licences; the authority sees it in its queue, late after ten
// working days (escalated once), and approves it. A proposal of another
// department's item is refused on the page; a post without the CSRF token
// is refused.
func TestPortalProposals(t *testing.T) {
	clk := &clock{}
	b := startBus(t, bus.Config{ControlEvery: time.Hour, ReadAuditEvery: time.Hour, Now: clk.now})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	const licence = "license.business_license"
	raw, err := os.ReadFile("../../../model/catalog/data/items/" + licence + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var it map[string]any
	_ = json.Unmarshal(raw, &it)
	it["fields"] = append(it["fields"].([]any), map[string]any{"name": "qr_code", "title": "电子营业执照二维码", "type": "string", "grade": 1})
	item, _ := json.Marshal(it)
	csrfRe := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	signin := func(dept string) (*http.Client, string) {
		t.Helper()
		hc := *b.HTTPClient()
		hc.Jar = &jarOne{}
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := hc.PostForm(b.APIURL()+"/portal/signin", url.Values{"department": {dept}, "token": {b.Officers[dept]}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		resp, err = hc.Get(b.APIURL() + "/portal/proposals")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrfRe.FindSubmatch(page)
		if resp.StatusCode != 200 || m == nil {
			t.Fatalf("%s's proposals page: %d %s", dept, resp.StatusCode, page)
		}
		return &hc, string(m[1])
	}
	post := func(hc *http.Client, path string, form url.Values) (int, string) {
		t.Helper()
		resp, err := hc.PostForm(b.APIURL()+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location") + string(body)
	}
	tax, taxCSRF := signin("tax")
	if code, page := post(tax, "/portal/proposals", url.Values{"csrf": {taxCSRF}, "item": {string(item)}, "reason": {"改他人目录"}}); code != 422 || !strings.Contains(page, "its own items only") {
		t.Fatalf("tax proposing market supervision's item: %d %s", code, page)
	}
	ms, msCSRF := signin("market_supervision")
	if code, _ := post(ms, "/portal/proposals", url.Values{"item": {string(item)}, "reason": {"无令牌"}}); code != http.StatusForbidden {
		t.Fatalf("a post without the CSRF token: %d", code)
	}
	if code, loc := post(ms, "/portal/proposals", url.Values{"csrf": {msCSRF}, "item": {string(item)}, "reason": {"增加二维码"}}); code != http.StatusSeeOther || !strings.Contains(loc, "/portal/proposals?done=") {
		t.Fatalf("market supervision proposes: %d %s", code, loc)
	}
	list := b.Proposals.List("market_supervision")
	if len(list) != 1 || list[0].State != proposals.Pending {
		t.Fatalf("proposals: %+v", list)
	}
	// Ten working days on, unreviewed: escalated, once.
	if err := b.Proposals.Tick(context.Background()); err != nil || b.Proposals.List("big_data")[0].Escalated {
		t.Fatalf("escalated before its deadline: %v", err)
	}
	clk.add(20 * 24 * time.Hour)
	if err := b.Proposals.Tick(context.Background()); err != nil || !b.Proposals.List("big_data")[0].Escalated {
		t.Fatalf("not escalated after its deadline: %v %+v", err, b.Proposals.List("big_data")[0])
	}
	auth, authCSRF := signin("big_data")
	resp, err := auth.Get(b.APIURL() + "/portal/proposals")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), list[0].ID) || !strings.Contains(string(page), `value="approve"`) || !strings.Contains(string(page), "field qr_code string grade 1") || !strings.Contains(string(page), "（已逾期）") {
		t.Fatalf("the authority's proposals page:\n%s", page)
	}
	if code, loc := post(auth, "/portal/review", url.Values{"csrf": {authCSRF}, "id": {list[0].ID}, "verdict": {"approve"}}); code != http.StatusSeeOther || !strings.Contains(loc, "done=") {
		t.Fatalf("approve: %d %s", code, loc)
	}
	if got := b.Proposals.List("big_data"); got[0].State != proposals.Approved || got[0].Version != 2 {
		t.Fatalf("after the review: %+v", got[0])
	}
}
