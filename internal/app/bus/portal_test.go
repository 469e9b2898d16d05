package bus_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dispute"
)

// officer is a headless Chromium signed in to the portal as dept.
func officer(t *testing.T, parent context.Context, b *bus.Bus, dept string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithNewBrowserContext()) // cookies of its own
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(b.APIURL()+"/portal/signin"),
		chromedp.SetValue(chromedp.CSS("#department"), dept),
		chromedp.SendKeys(chromedp.CSS("#token"), b.Officers[dept]),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`nav.menu`)),
	); err != nil {
		t.Fatalf("%s signs in: %v", dept, err)
	}
	return ctx
}

func shot(t *testing.T, ctx context.Context, name string) {
	art := os.Getenv("JUTONG_TEST_ARTIFACTS")
	if art == "" {
		art = filepath.Join(os.TempDir(), "jutong-test-artifacts")
	}
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.MkdirAll(art, 0o755)
		_ = os.WriteFile(filepath.Join(art, name+".png"), png, 0o644)
	}
}

// TestPortalSharing: in headless Chromium, health's officer signs in,
// applies for residents through the portal's form; the data authority and
// public security approve it from their queues; health's page shows the
// grant, and health's systems read the masked feed. A wrong token is
// refused; a form post without the session's CSRF token, or from another
// origin, is refused; the session cookie is HttpOnly, SameSite=Strict, and
// Secure over HTTPS.
func TestPortalSharing(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (scripts/deps.sh installs it)")
		}
		t.Skip("no chromium")
	}
	pgDSN := testenv.Postgres(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	const resident = "population.resident_registration"
	publishItem(t, b, cat, resident, 12, 41)

	actx, acancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.Flag("ignore-certificate-errors", true), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))...)
	defer acancel()
	tctx, tcancel := context.WithTimeout(actx, 2*time.Minute)
	defer tcancel()

	// The browser; then a wrong token.
	root, cancel := chromedp.NewContext(tctx)
	defer cancel()
	if err := chromedp.Do(root, chromedp.Navigate(b.APIURL()+"/portal/signin"), chromedp.SetValue(chromedp.CSS("#department"), "health"),
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Click(chromedp.CSS(`button[type=submit]`))); err != nil {
		t.Fatal(err)
	}
	if alert, err := chromedp.Run(root, chromedp.Text(chromedp.CSS(`.error`))); err != nil || alert == "" {
		t.Errorf("a wrong token: %q %v", alert, err)
	}

	health := officer(t, root, b, "health")
	if err := chromedp.Do(health,
		chromedp.Navigate(b.APIURL()+"/portal/apply?item="+resident),
		chromedp.SendKeys(chromedp.CSS("#purpose"), "疫苗接种覆盖率统计"),
		chromedp.Click(chromedp.CSS(`input[value=citizen_id]`)),
		chromedp.Click(chromedp.CSS(`input[value=name]`)),
		chromedp.Click(chromedp.CSS(`input[value=division_code]`)),
		chromedp.SetValue(chromedp.CSS("#grade"), "2"),
		chromedp.Click(chromedp.CSS(`form.stack button[type=submit]`)),
	); err != nil {
		t.Fatalf("health applies: %v", err)
	}
	if flash, err := chromedp.Run(health, chromedp.Text(chromedp.CSS(`.flash`))); err != nil || !strings.Contains(flash, "app-") {
		t.Fatalf("health applies: %q %v", flash, err)
	}
	shot(t, health, "portal-applied")
	apps := b.Control.List(control.Filter{Department: "health", Item: resident})
	if len(apps) != 1 || apps[0].State != control.AuthorityReview {
		t.Fatalf("health's application: %+v", apps)
	}
	id := apps[0].ID
	for _, by := range []string{cat.Authority, cat.Item(resident).Source} {
		o := officer(t, root, b, by)
		if err := chromedp.Do(o,
			chromedp.Navigate(b.APIURL()+"/portal/queue"),
			chromedp.WaitVisible(chromedp.Search(`//code[text()="`+id+`"]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=reason]`), "同意"),
			chromedp.Click(chromedp.CSS(`button[value=approve]`)),
		); err != nil {
			t.Fatalf("%s approves: %v", by, err)
		}
		if flash, err := chromedp.Run(o, chromedp.Text(chromedp.CSS(`.flash`))); err != nil || !strings.Contains(flash, id) {
			t.Fatalf("%s approves: %q %v", by, flash, err)
		}
		shot(t, o, "portal-approved-by-"+by)
	}
	if err := chromedp.Do(health, chromedp.Navigate(b.APIURL()+"/portal/")); err != nil {
		t.Fatal(err)
	}
	if state, err := chromedp.Run(health, chromedp.Text(chromedp.CSS(`td.state`))); err != nil || state != "已授权" {
		t.Errorf("health's page after the approvals: %q %v", state, err)
	}
	shot(t, health, "portal-granted")
	// ... and health reads its masked feed.
	recs, err := readAll(t, b, cat, "health", resident, 12, "portal")
	if err != nil || len(recs) != 12 {
		t.Fatalf("health reads %d records: %v", len(recs), err)
	}
	if id, _ := recs[0].Event.Data["citizen_id"].(string); !strings.Contains(id, "*") {
		t.Errorf("health reads citizen_id %q, not masked", id)
	}

	// Hostile posts, with a raw client holding health's cookie.
	var cookies []*http.Cookie
	jar := &jarOne{}
	hc := *b.HTTPClient()
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.PostForm(b.APIURL()+"/portal/signin", url.Values{"department": {"health"}, "token": {b.Officers["health"]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies = resp.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Secure != strings.HasPrefix(b.APIURL(), "https:") {
		t.Errorf("the session cookie: %+v", cookies)
	}
	form := url.Values{"item": {resident}, "purpose": {"另一个用途"}}
	if resp, err := hc.PostForm(b.APIURL()+"/portal/apply", form); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a post without the CSRF token: %v %v", err, resp)
	}
	req, _ := http.NewRequest("POST", b.APIURL()+"/portal/apply", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a post from another origin: %v %v", err, resp)
	}
	if n := len(b.Control.List(control.Filter{Department: "health"})); n != 1 {
		t.Errorf("health has %d applications after the hostile posts, want 1", n)
	}
	// A dispute's claim with markup is shown as text, to both sides.
	claim := `<script>alert(1)</script><img src=x onerror=alert(2)>姓名有误`
	if _, err := b.Disputes.Raise(context.Background(), "health", dispute.Request{Item: resident, Key: recs[0].Event.Key, Fields: []string{"name"}, Claim: claim}); err != nil {
		t.Fatalf("raise: %v", err)
	}
	resp, err = hc.Get(b.APIURL() + "/portal/disputes")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || bytes.Contains(page, []byte("<script>")) || bytes.Contains(page, []byte("<img")) || !bytes.Contains(page, []byte("&lt;script&gt;")) {
		t.Errorf("the disputes page with a claim of markup: %d %s", resp.StatusCode, page)
	}
	src := officer(t, root, b, cat.Item(resident).Source)
	if err := chromedp.Do(src, chromedp.Navigate(b.APIURL()+"/portal/disputes")); err != nil {
		t.Fatal(err)
	}
	if html, err := chromedp.Run(src, chromedp.Text(chromedp.CSS("main"))); err != nil || !strings.Contains(html, "<script>alert(1)</script>") {
		t.Errorf("the source's disputes page does not show the claim as text: %v %q", err, html)
	}
	shot(t, src, "portal-disputes")
}

// jarOne is a cookie jar for one site.
type jarOne struct{ cs []*http.Cookie }

func (j *jarOne) SetCookies(_ *url.URL, cs []*http.Cookie) { j.cs = append(j.cs, cs...) }
func (j *jarOne) Cookies(*url.URL) []*http.Cookie          { return j.cs }
