package control

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/jutong/jutong/internal/httpapi"
	"github.com/jutong/jutong/model/catalog"
)

// Handler serves the control API; every call authenticates a department's
// officer by the officer's bearer token (tokens: department code -> token;
// the data authority's officers act as the authority). Publishing tokens
// are not officers' and are refused here:
//
//	POST /v1/applications                 apply (body: Request)
//	GET  /v1/applications[?state=&item=&overdue=1]  the demand list: the authority
//	                                      sees all, a department its own and those on its items
//	GET  /v1/applications/{id}
//	POST /v1/applications/{id}/approve    (body: Verdict without approve)
//	POST /v1/applications/{id}/refuse     (body: {"reason": ...})
//	POST /v1/applications/{id}/revoke     (body: {"reason": ...})
//	GET  /v1/grants                       active grants (the authority: all)
//	GET  /v1/responsibilities             the responsibility list
func Handler(s *Service, tokens map[string]string, log *slog.Logger) http.Handler {
	h := &api{s: s, tokens: tokens, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/applications", h.auth(h.apply))
	mux.HandleFunc("GET /v1/applications", h.auth(h.list))
	mux.HandleFunc("GET /v1/applications/{id}", h.auth(h.get))
	mux.HandleFunc("POST /v1/applications/{id}/{action}", h.auth(h.decide))
	mux.HandleFunc("GET /v1/grants", h.auth(h.grants))
	mux.HandleFunc("GET /v1/responsibilities", h.auth(h.duties))
	return mux
}

type api struct {
	s      *Service
	tokens map[string]string
	log    *slog.Logger
}

type apiError = httpapi.Error

func (h *api) reply(w http.ResponseWriter, code int, v any) { httpapi.Reply(w, code, v) }

func (h *api) fail(w http.ResponseWriter, err error) {
	var re *RequestError
	if errors.As(err, &re) {
		h.reply(w, http.StatusUnprocessableEntity, apiError{Error: re.Error(), Field: re.Field})
		return
	}
	httpapi.Fail(w, h.log, "control API", err, map[error]int{ErrForbidden: http.StatusForbidden, ErrNotFound: http.StatusNotFound, ErrState: http.StatusConflict})
}

// auth resolves the officer's bearer token to a department.
func (h *api) auth(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return httpapi.Bearer(h.tokens, "a department officer's bearer token is required (Authorization: Bearer ...); a publishing token does not decide applications", next)
}

func (h *api) cat() *catalog.Catalog { return h.s.cfg.Catalog }

func (h *api) apply(w http.ResponseWriter, r *http.Request, dept string) {
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		h.reply(w, http.StatusBadRequest, apiError{Error: "body: " + err.Error()})
		return
	}
	a, err := h.s.Apply(r.Context(), dept, req)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, http.StatusCreated, a)
}

// visible says whether dept may see application a.
func (h *api) visible(a *Application, dept string) bool {
	return dept == h.cat().Authority || a.Department == dept || h.cat().Item(a.Item).Source == dept
}

func (h *api) list(w http.ResponseWriter, r *http.Request, dept string) {
	q := r.URL.Query()
	f := Filter{Item: q.Get("item"), State: State(q.Get("state")), Department: q.Get("department"), Overdue: q.Get("overdue") == "1"}
	out := []*Application{}
	for _, a := range h.s.List(f) {
		if h.visible(a, dept) {
			out = append(out, a)
		}
	}
	h.reply(w, http.StatusOK, out)
}

func (h *api) get(w http.ResponseWriter, r *http.Request, dept string) {
	a, ok := h.s.Get(r.PathValue("id"))
	if !ok || !h.visible(a, dept) {
		h.reply(w, http.StatusNotFound, apiError{Error: "no application " + r.PathValue("id")})
		return
	}
	h.reply(w, http.StatusOK, a)
}

func (h *api) decide(w http.ResponseWriter, r *http.Request, dept string) {
	var v Verdict
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&v); err != nil {
			h.reply(w, http.StatusBadRequest, apiError{Error: "body: " + err.Error()})
			return
		}
	}
	id := r.PathValue("id")
	var a *Application
	var err error
	switch r.PathValue("action") {
	case "approve":
		v.Approve = true
		a, err = h.s.Decide(r.Context(), id, dept, v)
	case "refuse":
		v.Approve = false
		a, err = h.s.Decide(r.Context(), id, dept, v)
	case "revoke":
		a, err = h.s.Revoke(r.Context(), id, dept, v.Reason)
	default:
		h.reply(w, http.StatusNotFound, apiError{Error: "unknown action " + r.PathValue("action") + ": approve, refuse or revoke"})
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, http.StatusOK, a)
}

func (h *api) grants(w http.ResponseWriter, r *http.Request, dept string) {
	out := []Grant{}
	for _, g := range h.s.Grants() {
		if dept == h.cat().Authority || g.Department == dept || h.cat().Item(g.Item).Source == dept {
			out = append(out, g)
		}
	}
	h.reply(w, http.StatusOK, out)
}

func (h *api) duties(w http.ResponseWriter, r *http.Request, dept string) {
	out := []Duty{}
	for _, d := range Responsibilities(h.cat()) {
		if dept == h.cat().Authority || d.Department == dept || r.URL.Query().Get("all") == "1" {
			out = append(out, d)
		}
	}
	h.reply(w, http.StatusOK, out)
}
