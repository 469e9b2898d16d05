package bus_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/open"
	"github.com/twmb/franz-go/pkg/kgo"
)

// get fetches path from the bus's API as the public (no login).
func get(t *testing.T, b *bus.Bus, path string) (int, http.Header, []byte) {
	t.Helper()
	cl := *b.HTTPClient()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := cl.Get(b.APIURL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// TestOpenSystem: the open items are released de-identified by the
// catalog's rules and served as the public's: CKAN's Action API, DCAT, the
// downloads (a stable URL per release, latest redirecting to it), the
// portal. No byte of any release holds a value the rules drop or mask; a
// conditional item's data and a not-open item are refused; every download
// is audited; every page carries a strict CSP, and text from the request
// cannot inject markup. Walked in headless Chromium: search, dataset,
// download.
func TestOpenSystem(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN, SecretsDir: t.TempDir(), ControlEvery: time.Hour, ReadAuditEvery: time.Hour, OpenEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ent, rating, resident = "legal_person.enterprise_registration", "legal_person.tax_credit_rating", "population.resident_registration"
	evs := publishItem(t, b, cat, ent, 80, 31)
	publishItem(t, b, cat, rating, 10, 32)
	publishItem(t, b, cat, resident, 10, 33)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := b.RefreshOpen(ctx); err != nil || n < 2 {
		t.Fatalf("open releases made: %d, %v", n, err)
	}
	if n, err := b.RefreshOpen(ctx); err != nil || n != 0 {
		t.Errorf("a refresh with nothing new made %d releases (%v)", n, err)
	}

	// CKAN's Action API.
	var list struct {
		Success bool     `json:"success"`
		Result  []string `json:"result"`
	}
	code, _, body := get(t, b, "/api/3/action/package_list")
	if err := json.Unmarshal(body, &list); err != nil || code != 200 || !list.Success || !slices.Contains(list.Result, ent) || !slices.Contains(list.Result, rating) || slices.Contains(list.Result, resident) {
		t.Fatalf("package_list: %d %s", code, body)
	}
	var show struct {
		Result struct {
			Title     string `json:"title"`
			Resources []struct {
				Format, URL, Hash string
				Size              int64
				Rows              int
			} `json:"resources"`
			Fields []struct{ Name, Deidentification string } `json:"fields"`
		} `json:"result"`
	}
	code, _, body = get(t, b, "/api/3/action/package_show?id="+ent)
	if err := json.Unmarshal(body, &show); err != nil || code != 200 || len(show.Result.Resources) != 3 {
		t.Fatalf("package_show: %d %s", code, body)
	}
	for _, f := range show.Result.Fields {
		if f.Name == "legal_representative_id" {
			t.Error("package_show lists a dropped field")
		}
	}
	var search struct {
		Result struct {
			Count        int                       `json:"count"`
			SearchFacets map[string]map[string]any `json:"search_facets"`
		} `json:"result"`
	}
	code, _, body = get(t, b, `/api/3/action/package_search?q=%E4%BC%81%E4%B8%9A&facet.field=%5B%22organization%22%5D`) // q=企业
	if err := json.Unmarshal(body, &search); err != nil || code != 200 || search.Result.Count < 1 || search.Result.SearchFacets["organization"] == nil {
		t.Errorf("package_search: %d %s", code, body)
	}
	if code, _, body = get(t, b, "/api/3/action/package_show?id="+resident); code != 404 {
		t.Errorf("package_show of a not-open item: %d %s", code, body)
	}
	if code, _, body = get(t, b, "/api/3/action/organization_list"); code != 200 || !bytes.Contains(body, []byte("market_supervision")) {
		t.Errorf("organization_list: %d %s", code, body)
	}
	// DCAT.
	var dcat map[string]any
	code, _, body = get(t, b, "/catalog.jsonld")
	if err := json.Unmarshal(body, &dcat); err != nil || code != 200 || dcat["@type"] != "dcat:Catalog" || len(dcat["dcat:dataset"].([]any)) != len(list.Result) {
		t.Errorf("DCAT: %d %.300s", code, body)
	}

	// The downloads: nothing the rules drop or mask, in any byte.
	var all []byte
	for i, res := range show.Result.Resources {
		if i == 2 {
			// The counts by division and type: each one under 5 suppressed.
			_, _, data := get(t, b, strings.TrimPrefix(res.URL, b.APIURL()))
			recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
			if err != nil || len(recs) < 2 || recs[0][2] != "count" {
				t.Fatalf("the aggregate: %v %s", err, data)
			}
			suppressed, total := 0, 0
			for _, r := range recs[1:] {
				if r[2] == "<5" {
					suppressed++
					continue
				}
				n, err := strconv.Atoi(r[2])
				if err != nil || n < 5 {
					t.Errorf("a count released: %q", r[2])
				}
				total += n
			}
			if suppressed == 0 || total > res.Rows+show.Result.Resources[0].Rows {
				t.Errorf("the aggregate: %d groups suppressed, %d counted", suppressed, total)
			}
			continue
		}
		path := strings.TrimPrefix(res.URL, b.APIURL())
		code, hd, data := get(t, b, path)
		if code != 200 || int64(len(data)) != res.Size || !strings.Contains(hd.Get("Cache-Control"), "immutable") {
			t.Fatalf("download %s: %d, %d bytes (want %d), %v", path, code, len(data), res.Size, hd)
		}
		all = append(all, data...)
		if res.Format == "CSV" {
			recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\uFEFF")))).ReadAll()
			if err != nil || len(recs) != res.Rows+1 || slices.Contains(recs[0], "legal_representative_id") {
				t.Fatalf("the CSV: %d records (want %d and a header), header %v, %v", len(recs), res.Rows, recs[0], err)
			}
			ir, iy := slices.Index(recs[0], "legal_representative"), slices.Index(recs[0], "approved_at")
			for _, r := range recs[1:] {
				if !strings.Contains(r[ir], "*") || (r[iy] != "" && len(r[iy]) != 4) {
					t.Errorf("a released row: legal_representative %q (masked?), approved_at %q (a year?)", r[ir], r[iy])
					break
				}
			}
		}
	}
	for _, e := range evs {
		if id, _ := e.Data["legal_representative_id"].(string); id != "" && bytes.Contains(all, []byte(id)) {
			t.Errorf("a release holds legal_representative_id %s, which the rules drop", id)
		}
		if ts, ok := e.Data["approved_at"].(time.Time); ok && bytes.Contains(all, []byte(ts.UTC().Format("2006-01-02 15:04"))) {
			t.Errorf("a release holds approved_at %s, which the rules cut to its year", ts)
		}
	}
	if code, hd, _ := get(t, b, "/open/download/"+ent+"/latest.csv"); code != http.StatusFound || !strings.HasPrefix(hd.Get("Location"), "/open/download/"+ent+"/") {
		t.Errorf("latest.csv: %d %s", code, hd.Get("Location"))
	}
	if code, _, body := get(t, b, "/open/download/"+rating+"/latest.csv"); code != http.StatusUnauthorized {
		t.Errorf("a conditional item's data without a key: %d %s", code, body)
	}
	if code, _, _ := get(t, b, "/open/download/"+resident+"/latest.csv"); code != http.StatusNotFound {
		t.Errorf("a not-open item's data: %d", code)
	}
	// Conditional open: an applicant registers, gets a key (kept hashed),
	// is refused until the authority approves, then reads the release, a
	// page at a time, within its rate; every page audited.
	conditional(t, ctx, b, pgDSN, rating)
	// More changes, a new release, and its changes since the last one.
	more := publishItem(t, b, cat, ent, 30, 34)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // release ids are to the second
	if n, err := b.RefreshOpen(ctx); err != nil || n != 1 {
		t.Fatalf("the second refresh made %d releases: %v", n, err)
	}
	if code, _, body = get(t, b, "/api/3/action/package_show?id="+ent); code != 200 {
		t.Fatalf("package_show after the second release: %d %s", code, body)
	}
	var show2 struct {
		Result struct {
			Resources []struct{ URL, Name string } `json:"resources"`
		} `json:"result"`
	}
	_ = json.Unmarshal(body, &show2)
	changes := ""
	for _, r := range show2.Result.Resources {
		if strings.HasSuffix(r.URL, ".changes.csv") {
			changes = strings.TrimPrefix(r.URL, b.APIURL())
		}
	}
	if changes == "" {
		t.Fatalf("no changes resource in the second release: %s", body)
	}
	_, _, cdata := get(t, b, changes)
	crecs, err := csv.NewReader(bytes.NewReader(cdata)).ReadAll()
	if err != nil || len(crecs) < 2 || crecs[0][0] != "change" {
		t.Fatalf("the changes: %v %s", err, cdata)
	}
	added := 0
	for _, r := range crecs[1:] {
		if r[0] == "added" {
			added++
		}
	}
	if added == 0 || added > len(more) {
		t.Errorf("the changes: %d added for %d events published", added, len(more))
	}
	for _, e := range append(evs, more...) {
		if id, _ := e.Data["legal_representative_id"].(string); id != "" && bytes.Contains(cdata, []byte(id)) {
			t.Errorf("the changes hold legal_representative_id %s, which the rules drop", id)
		}
	}
	// The portal.
	code, hd, page := get(t, b, "/?q=<script>alert(1)</script>")
	if code != 200 || bytes.Contains(page, []byte("<script>")) || !strings.Contains(hd.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("the search page with markup in q: %d, CSP %q, %s", code, hd.Get("Content-Security-Policy"), page)
	}
	if code, _, page = get(t, b, "/dataset/"+ent); code != 200 || !bytes.Contains(page, []byte(show.Result.Title)) || !bytes.Contains(page, []byte("/open/download/"+ent+"/")) {
		t.Errorf("the dataset page: %d %s", code, page)
	}
	// By tag (the domain) and by theme.
	if code, _, page = get(t, b, "/?tags=legal_person"); code != 200 || !bytes.Contains(page, []byte(show.Result.Title)) || bytes.Contains(page, []byte("geography.standard_address")) {
		t.Errorf("the search page by tag: %d %.500s", code, page)
	}
	if code, _, page = get(t, b, "/"); code != 200 || !bytes.Contains(page, []byte("主题")) || !bytes.Contains(page, []byte("标签")) {
		t.Errorf("the search page lacks the theme and tag facets: %d", code)
	}
	req, _ := http.NewRequest("POST", b.APIURL()+"/", strings.NewReader("x"))
	if resp, err := b.HTTPClient().Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to the portal: %v %v", err, resp)
	}

	// The metadata calls, audited in aggregate.
	if err := b.FlushOpenCalls(ctx); err != nil {
		t.Fatal(err)
	}
	kopts, _ := b.Kafka().Opts()
	calls := map[string]int64{}
	downloads := 0
	if err := kafkaconn.ReadAll(ctx, kopts, audit.Topic, func(r *kgo.Record) {
		var e audit.Event
		if json.Unmarshal(r.Value, &e) == nil {
			switch e.Kind {
			case open.APICalls:
				calls[e.Detail] += e.Records
			case open.OpenDownload:
				downloads++
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if calls["package_list"] < 1 || calls["package_show"] < 2 || calls["package_search"] < 1 || calls["catalog.jsonld"] < 1 || downloads < 3 {
		t.Errorf("audited: calls %v, %d downloads", calls, downloads)
	}
	// The open releases' scorecard (ClickHouse, from the audit trail).
	ch := testenv.ClickHouseConn(t, chDSN)
	var releases uint64
	var onTime uint8
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err := ch.QueryRow(ctx, "SELECT releases, on_time FROM scorecard_open_releases WHERE item = ?", ent).Scan(&releases, &onTime); err == nil && releases == 2 {
			break
		}
	}
	if releases != 2 || onTime != 1 {
		t.Errorf("scorecard_open_releases for %s: %d releases, on time %d (want 2, 1)", ent, releases, onTime)
	}

	browse(t, b, ent, show.Result.Title)
}

// browse walks the portal in headless Chromium as a person would (search,
// then the dataset, then its download) and keeps screenshots in
// $JUTONG_TEST_ARTIFACTS (default: a directory under the system's temp).
func browse(t *testing.T, b *bus.Bus, item, title string) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (scripts/deps.sh installs it)")
		}
		t.Skip("no chromium")
	}
	art := os.Getenv("JUTONG_TEST_ARTIFACTS")
	if art == "" {
		art = filepath.Join(os.TempDir(), "jutong-test-artifacts")
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	profile := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
			"--user-data-dir=" + profile, "--window-size=1280,900"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	search := b.APIURL() + "/?q=" + "%E4%BC%81%E4%B8%9A%E7%99%BB%E8%AE%B0" // 企业登记
	dom := run("--dump-dom", search)
	if !strings.Contains(dom, title) || !strings.Contains(dom, `href="/dataset/`+item+`"`) {
		t.Fatalf("the search page in Chromium lacks %s: %.2000s", title, dom)
	}
	run("--screenshot="+filepath.Join(art, "open-search.png"), search)
	dom = run("--dump-dom", b.APIURL()+"/dataset/"+item)
	i := strings.Index(dom, `class="download" href="`)
	if i < 0 {
		t.Fatalf("the dataset page in Chromium has no download link: %.2000s", dom)
	}
	link := dom[i+len(`class="download" href="`):]
	link = link[:strings.Index(link, `"`)]
	run("--screenshot="+filepath.Join(art, "open-dataset.png"), b.APIURL()+"/dataset/"+item)
	// The link the page offers downloads the release.
	resp, err := b.HTTPClient().Get(strings.ReplaceAll(link, "&amp;", "&"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the page's download link %s: %v %v", link, err, resp)
	}
	resp.Body.Close()
	t.Logf("walked search → dataset → download in Chromium; screenshots in %s", art)
}

// call makes a request of the open API with a key or a token, JSON body.
func call(t *testing.T, b *bus.Bus, method, path, bearer string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.APIURL()+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := b.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func conditional(t *testing.T, ctx context.Context, b *bus.Bus, pgDSN, item string) {
	t.Helper()
	records := "/open/v1/datasets/" + item + "/records?limit=4"
	app := map[string]any{"organisation": "重庆信用研究院", "contact": "data@example.org", "use": "研究纳税信用等级与企业存续的关系", "items": []string{item}}
	if code, body := call(t, b, "POST", "/open/v1/applicants", "", map[string]any{"organisation": "x", "contact": "y", "use": "短", "items": []string{item}}); code != 422 {
		t.Errorf("an application without a stated use: %d %s", code, body)
	}
	if code, body := call(t, b, "POST", "/open/v1/applicants", "", map[string]any{"organisation": "x", "contact": "y", "use": "a use long enough", "items": []string{"population.resident_registration"}}); code != 422 {
		t.Errorf("an application for a not-open item: %d %s", code, body)
	}
	// A form of another site cannot post it (no JSON, no preflight).
	req, _ := http.NewRequest("POST", b.APIURL()+"/open/v1/applicants", strings.NewReader("organisation=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := b.HTTPClient().Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a form post: %v %v", err, resp)
	}
	code, body := call(t, b, "POST", "/open/v1/applicants", "", app)
	var reg struct {
		Applicant struct{ ID, State string } `json:"applicant"`
		Key       string                     `json:"key"`
	}
	if err := json.Unmarshal(body, &reg); err != nil || code != 201 || reg.Key == "" || reg.Applicant.State != "pending" {
		t.Fatalf("register: %d %s", code, body)
	}
	// Kept hashed: the key appears nowhere in the database.
	var plain int
	if err := testenv.PostgresPool(t, pgDSN).QueryRow(ctx, "SELECT count(*) FROM jutong.open_applicants WHERE key_sha256 = $1 OR position($1 in organisation || contact || use) > 0", reg.Key).Scan(&plain); err != nil || plain != 0 {
		t.Errorf("the key is stored in clear (%d rows, %v)", plain, err)
	}
	for _, c := range []struct {
		what, key string
		want      int
	}{{"no key", "", 401}, {"a wrong key", "jok_00000000000000000000000000000000", 401}, {"a pending key", reg.Key, 403}} {
		if code, body := call(t, b, "GET", records, c.key, nil); code != c.want {
			t.Errorf("records with %s: %d %s (want %d)", c.what, code, body, c.want)
		}
	}
	if code, _ := call(t, b, "POST", "/open/v1/applicants/"+reg.Applicant.ID+"/approve", reg.Key, nil); code != 401 {
		t.Errorf("an applicant approving itself: %d", code)
	}
	if code, body := call(t, b, "POST", "/open/v1/applicants/"+reg.Applicant.ID+"/approve", b.Officers["market_supervision"], nil); code != 401 {
		t.Errorf("another department's officer approving: %d %s", code, body)
	}
	if code, body := call(t, b, "POST", "/open/v1/applicants/"+reg.Applicant.ID+"/approve", b.Officers[sample(t).Authority], map[string]string{"reason": "用途明确"}); code != 200 {
		t.Fatalf("the authority approves: %d %s", code, body)
	}
	// Paged: every row once.
	seen := 0
	next := ""
	for range 10 {
		path := records
		if next != "" {
			path += "&cursor=" + next
		}
		code, body := call(t, b, "GET", path, reg.Key, nil)
		var page struct {
			Records []map[string]any `json:"records"`
			Next    string           `json:"next"`
			Total   int              `json:"total"`
		}
		if code == 429 {
			time.Sleep(time.Second)
			continue
		}
		if err := json.Unmarshal(body, &page); err != nil || code != 200 {
			t.Fatalf("records: %d %s", code, body)
		}
		seen += len(page.Records)
		if next = page.Next; next == "" {
			if seen != page.Total {
				t.Errorf("paged %d records of %d", seen, page.Total)
			}
			break
		}
	}
	if code, _, _ := get(t, b, "/open/download/"+item+"/latest.csv"); code != 401 {
		t.Errorf("the conditional download without a key: %d", code)
	}
	// Over its rate (5/s): refused, with Retry-After.
	limited := false
	for range 20 {
		if code, _ := call(t, b, "GET", records, reg.Key, nil); code == 429 {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("20 calls at once were not limited")
	}
}
