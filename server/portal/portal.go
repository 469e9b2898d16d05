// Package portal is the sharing side of the portal: the pages a
// department's officers and the data authority use in a browser. Signed in
// with the department's officer token, an officer sees the catalog with its
// share types, applies for an item (purpose, fields, grade), decides the
// applications waiting for it with their working-day deadlines, sees the
// disputes it raised and those it must answer, and its department's
// scorecard as a chart. Server-rendered, no script, a strict CSP; every form
// carries a CSRF token bound to the session, and the session cookie is
// HttpOnly, Secure, SameSite=Strict.
package portal

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dispute"
	"github.com/jutong/jutong/server/open"
	"github.com/jutong/jutong/server/proposals"
)

//go:embed web
var web embed.FS

// Bar is one bar of the scorecard's chart.
type Bar struct {
	Label             string
	Accepted, Refused float64
}

// Config configures the portal.
type Config struct {
	Catalog  *catalog.Catalog
	Control  *control.Service
	Disputes *dispute.Service // nil: no disputes page
	// Proposals are the catalog's proposals (nil: no proposals page).
	Proposals *proposals.Service
	// Officers are the departments' officer tokens (officers.json).
	Officers map[string]string
	// Secret signs the sessions and the CSRF tokens.
	Secret []byte
	// Scorecard gives a department's records by item (nil: no chart).
	Scorecard func(dept string) []Bar
	Log       *slog.Logger
	Now       func() time.Time
}

// Portal serves the pages.
type Portal struct {
	cfg   Config
	pages *template.Template
}

// New makes the portal.
func New(cfg Config) (*Portal, error) {
	if len(cfg.Secret) < 16 {
		return nil, errors.New("portal: a secret of 16 bytes or more is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Portal{cfg: cfg}
	var err error
	p.pages, err = template.New("").Funcs(template.FuncMap{
		"dept": func(code string) string {
			if d := cfg.Catalog.Department(code); d != nil {
				return d.Name
			}
			return code
		},
		"share": func(s catalog.ShareType) string {
			return map[catalog.ShareType]string{catalog.ShareUnconditional: "无条件共享", catalog.ShareConditional: "有条件共享", catalog.ShareNone: "不予共享"}[s]
		},
		"state":  func(s any) string { return states[fmt.Sprint(s)] },
		"pstate": func(s string) string { return proposalStates[s] },
		"date": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Local().Format("2006-01-02 15:04")
		},
	}).ParseFS(web, "web/*.html")
	return p, err
}

// states are the applications' and disputes' states, for a person.
var states = map[string]string{"authority_review": "数据主管部门审核中", "source_review": "数源部门审核中", "granted": "已授权", "refused": "已拒绝",
	"revoked": "已撤销", "expired": "已过期", "pending": "待处理", "correcting": "更正中", "corrected": "已更正", "rejected": "已驳回"}

const cookieName = "jutong_portal"

// session is the signed-in department, or "".
func (p *Portal) session(r *http.Request) (dept, raw string) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", ""
	}
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return "", ""
	}
	parts := strings.Split(string(b), "|")
	if len(parts) != 3 {
		return "", ""
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || p.cfg.Now().Unix() > exp {
		return "", ""
	}
	if !hmac.Equal([]byte(parts[2]), []byte(p.mac("session|"+parts[0]+"|"+parts[1]))) {
		return "", ""
	}
	return parts[0], c.Value
}

func (p *Portal) mac(s string) string {
	m := hmac.New(sha256.New, p.cfg.Secret)
	m.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrf is the CSRF token of a session.
func (p *Portal) csrf(raw string) string { return p.mac("csrf|" + raw) }

// checkPost refuses a POST without the session's CSRF token, or from
// another origin.
func (p *Portal) checkPost(w http.ResponseWriter, r *http.Request, raw string) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			http.Error(w, "a form of another site", http.StatusForbidden)
			return false
		}
	}
	if err := r.ParseForm(); err != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(p.csrf(raw))) != 1 {
		http.Error(w, "the form's token is missing or wrong: reload the page", http.StatusForbidden)
		return false
	}
	return true
}

// Handler serves the portal under /portal/.
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /portal/signin", p.signinPage)
	mux.HandleFunc("POST /portal/signin", p.signin)
	mux.HandleFunc("POST /portal/signout", p.auth(p.signout))
	mux.HandleFunc("GET /portal/{$}", p.auth(p.home))
	mux.HandleFunc("GET /portal/apply", p.auth(p.applyPage))
	mux.HandleFunc("POST /portal/apply", p.auth(p.apply))
	mux.HandleFunc("GET /portal/queue", p.auth(p.queue))
	mux.HandleFunc("POST /portal/decide", p.auth(p.decide))
	mux.HandleFunc("GET /portal/disputes", p.auth(p.disputes))
	mux.HandleFunc("GET /portal/proposals", p.auth(p.proposals))
	mux.HandleFunc("POST /portal/proposals", p.auth(p.propose))
	mux.HandleFunc("POST /portal/review", p.auth(p.review))
	mux.HandleFunc("GET /portal/scorecard", p.auth(p.scorecard))
	css := append(open.Stylesheet(), must(web.ReadFile("web/portal.css"))...)
	mux.HandleFunc("GET /portal/static/portal.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		_, _ = w.Write(css)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open.SecurityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

type handler func(w http.ResponseWriter, r *http.Request, dept, raw string)

func (p *Portal) auth(next handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		dept, raw := p.session(r)
		if dept == "" {
			http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !p.checkPost(w, r, raw) {
			return
		}
		next(w, r, dept, raw)
	}
}

func (p *Portal) render(w http.ResponseWriter, code int, page string, data map[string]any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := p.pages.ExecuteTemplate(w, page, data); err != nil {
		p.cfg.Log.Warn("portal: render", "page", page, "err", err)
	}
}

func (p *Portal) page(dept, raw, title string, extra map[string]any) map[string]any {
	m := map[string]any{"Title": title, "Dept": dept, "CSRF": p.csrf(raw), "Authority": dept == p.cfg.Catalog.Authority}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func (p *Portal) signinPage(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, "signin.html", map[string]any{"Title": "部门登录", "Departments": p.cfg.Catalog.Departments, "Error": r.URL.Query().Get("error")})
}

func (p *Portal) signin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			http.Error(w, "a form of another site", http.StatusForbidden)
			return
		}
	}
	dept, tok := r.PostForm.Get("department"), r.PostForm.Get("token")
	want, ok := p.cfg.Officers[dept]
	if !ok || want == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(want)) != 1 {
		p.render(w, http.StatusUnauthorized, "signin.html", map[string]any{"Title": "部门登录", "Departments": p.cfg.Catalog.Departments, "Error": "部门或令牌不正确"})
		return
	}
	exp := strconv.FormatInt(p.cfg.Now().Add(8*time.Hour).Unix(), 10)
	v := base64.RawURLEncoding.EncodeToString([]byte(dept + "|" + exp + "|" + p.mac("session|"+dept+"|"+exp)))
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: v, Path: "/portal/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 8 * 3600})
	http.Redirect(w, r, "/portal/", http.StatusSeeOther)
}

func (p *Portal) signout(w http.ResponseWriter, r *http.Request, _, _ string) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/portal/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/portal/signin", http.StatusSeeOther)
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request, dept, raw string) {
	mine := p.cfg.Control.List(control.Filter{Department: dept})
	slices.Reverse(mine)
	p.render(w, http.StatusOK, "home.html", p.page(dept, raw, "共享目录", map[string]any{"Items": p.cfg.Catalog.Items, "Mine": mine, "Flash": r.URL.Query().Get("done")}))
}

func (p *Portal) applyPage(w http.ResponseWriter, r *http.Request, dept, raw string) {
	it := p.cfg.Catalog.Item(r.URL.Query().Get("item"))
	if it == nil {
		http.Error(w, "no such item", http.StatusNotFound)
		return
	}
	p.render(w, http.StatusOK, "apply.html", p.page(dept, raw, "申请 "+it.Name, map[string]any{"Item": it}))
}

func (p *Portal) apply(w http.ResponseWriter, r *http.Request, dept, raw string) {
	it := p.cfg.Catalog.Item(r.PostForm.Get("item"))
	if it == nil {
		http.Error(w, "no such item", http.StatusNotFound)
		return
	}
	grade, _ := strconv.Atoi(r.PostForm.Get("grade"))
	app, err := p.cfg.Control.Apply(r.Context(), dept, control.Request{Item: it.Code, Purpose: r.PostForm.Get("purpose"), Fields: r.PostForm["fields"], Grade: grade})
	if err != nil {
		p.render(w, http.StatusUnprocessableEntity, "apply.html", p.page(dept, raw, "申请 "+it.Name, map[string]any{"Item": it, "Error": err.Error()}))
		return
	}
	http.Redirect(w, r, "/portal/?done="+url.QueryEscape("已提交申请 "+app.ID), http.StatusSeeOther)
}

// waiting are the applications this department must decide now.
func (p *Portal) waiting(dept string) []*control.Application {
	var out []*control.Application
	for _, a := range p.cfg.Control.List(control.Filter{}) {
		switch {
		case a.State == control.AuthorityReview && dept == p.cfg.Catalog.Authority,
			a.State == control.SourceReview && p.cfg.Catalog.Item(a.Item) != nil && p.cfg.Catalog.Item(a.Item).Source == dept:
			out = append(out, a)
		}
	}
	return out
}

func (p *Portal) queue(w http.ResponseWriter, r *http.Request, dept, raw string) {
	p.render(w, http.StatusOK, "queue.html", p.page(dept, raw, "待审批", map[string]any{"Apps": p.waiting(dept), "Now": p.cfg.Now(), "Flash": r.URL.Query().Get("done")}))
}

func (p *Portal) decide(w http.ResponseWriter, r *http.Request, dept, raw string) {
	id, approve := r.PostForm.Get("id"), r.PostForm.Get("verdict") == "approve"
	app, err := p.cfg.Control.Decide(r.Context(), id, dept, control.Verdict{Approve: approve, Reason: r.PostForm.Get("reason")})
	if err != nil {
		p.render(w, http.StatusUnprocessableEntity, "queue.html", p.page(dept, raw, "待审批", map[string]any{"Apps": p.waiting(dept), "Now": p.cfg.Now(), "Error": err.Error()}))
		return
	}
	http.Redirect(w, r, "/portal/queue?done="+url.QueryEscape(app.ID+"："+states[string(app.State)]), http.StatusSeeOther)
}

func (p *Portal) disputes(w http.ResponseWriter, r *http.Request, dept, raw string) {
	var raised, toAnswer []*dispute.Dispute
	if p.cfg.Disputes != nil {
		for _, d := range p.cfg.Disputes.List(dept) {
			if d.Source == dept {
				toAnswer = append(toAnswer, d)
			} else {
				raised = append(raised, d)
			}
		}
	}
	p.render(w, http.StatusOK, "disputes.html", p.page(dept, raw, "数据疑义", map[string]any{"Raised": raised, "ToAnswer": toAnswer}))
}

// proposals lists the catalog proposals the department may see, with the
// authority's review forms, and the form to propose.
func (p *Portal) proposals(w http.ResponseWriter, r *http.Request, dept, raw string) {
	p.proposalsPage(w, http.StatusOK, dept, raw, r.URL.Query().Get("done"), "")
}

func (p *Portal) proposalsPage(w http.ResponseWriter, code int, dept, raw, flash, failure string) {
	var list []*proposals.Proposal
	if p.cfg.Proposals != nil {
		list = p.cfg.Proposals.List(dept)
		slices.Reverse(list)
	}
	p.render(w, code, "proposals.html", p.page(dept, raw, "目录申报", map[string]any{"Proposals": list, "Now": p.cfg.Now(), "Flash": flash, "Error": failure}))
}

func (p *Portal) propose(w http.ResponseWriter, r *http.Request, dept, raw string) {
	if p.cfg.Proposals == nil {
		http.Error(w, "no proposals here", http.StatusNotFound)
		return
	}
	it, err := catalog.ParseItem([]byte(r.PostForm.Get("item")))
	if err == nil {
		var pr *proposals.Proposal
		if pr, err = p.cfg.Proposals.Propose(r.Context(), dept, it, r.PostForm.Get("reason")); err == nil {
			http.Redirect(w, r, "/portal/proposals?done="+url.QueryEscape("已提交申报 "+pr.ID), http.StatusSeeOther)
			return
		}
	}
	p.proposalsPage(w, http.StatusUnprocessableEntity, dept, raw, "", err.Error())
}

func (p *Portal) review(w http.ResponseWriter, r *http.Request, dept, raw string) {
	if p.cfg.Proposals == nil {
		http.Error(w, "no proposals here", http.StatusNotFound)
		return
	}
	pr, err := p.cfg.Proposals.Decide(r.Context(), r.PostForm.Get("id"), dept, r.PostForm.Get("verdict"), r.PostForm.Get("reason"))
	if err != nil {
		p.proposalsPage(w, http.StatusUnprocessableEntity, dept, raw, "", err.Error())
		return
	}
	http.Redirect(w, r, "/portal/proposals?done="+url.QueryEscape(pr.ID+"："+proposalStates[pr.State]), http.StatusSeeOther)
}

var proposalStates = map[string]string{proposals.Pending: "待审核", proposals.ChangesRequested: "退回修改", proposals.Approved: "已通过", proposals.Refused: "不予通过"}

func (p *Portal) scorecard(w http.ResponseWriter, r *http.Request, dept, raw string) {
	var bars []Bar
	if p.cfg.Scorecard != nil {
		bars = p.cfg.Scorecard(dept)
	}
	top := 0.0
	for _, b := range bars {
		top = max(top, b.Accepted+b.Refused)
	}
	type bar struct {
		Label        string
		Y, W, X2, W2 int
	}
	var chart []bar
	for i, b := range bars {
		ok, bad := 0, 0
		if top > 0 {
			ok, bad = int(b.Accepted*390/top), int(b.Refused*390/top)
		}
		chart = append(chart, bar{Label: b.Label, Y: i * 20, W: ok, X2: 320 + ok, W2: bad})
	}
	p.render(w, http.StatusOK, "scorecard.html", p.page(dept, raw, "本部门计分卡", map[string]any{"Bars": bars, "Chart": chart, "Height": len(bars)*20 + 4}))
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err) // the file is embedded
	}
	return b
}
