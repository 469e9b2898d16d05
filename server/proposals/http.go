package proposals

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/jutong/jutong/internal/httpapi"
	"github.com/jutong/jutong/model/catalog"
)

// Request is a proposal as the API takes it: the item's whole definition
// (its file's JSON) and why.
type Request struct {
	Item   json.RawMessage `json:"item"`
	Reason string          `json:"reason"`
}

// Handler serves the proposals to departments' officers (bearer tokens,
// as the control API):
//
//	POST /v1/proposals                      propose (body: Request)
//	GET  /v1/proposals                      the authority: all; a department: its own
//	POST /v1/proposals/{id}/{verdict}       the authority: approve, changes, refuse (body: {"reason": ...})
//	GET  /v1/catalog/items/{code}/history   every version, with who proposed and approved it
//	GET  /v1/catalog/items/{code}/diff?from=N&to=M
func Handler(s *Service, tokens map[string]string, log *slog.Logger) http.Handler {
	h := &api{s: s, log: log}
	auth := func(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
		return httpapi.Bearer(tokens, "a department officer's bearer token is required (Authorization: Bearer ...)", next)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/proposals", auth(h.propose))
	mux.HandleFunc("GET /v1/proposals", auth(h.list))
	mux.HandleFunc("POST /v1/proposals/{id}/{verdict}", auth(h.decide))
	mux.HandleFunc("GET /v1/catalog/items/{code}/history", auth(h.history))
	mux.HandleFunc("GET /v1/catalog/items/{code}/diff", auth(h.diff))
	return mux
}

type api struct {
	s   *Service
	log *slog.Logger
}

func (h *api) fail(w http.ResponseWriter, err error) {
	var re *RuleError
	if errors.As(err, &re) {
		httpapi.Reply(w, http.StatusUnprocessableEntity, map[string]string{"error": re.Error(), "rule": re.Rule, "field": re.Field})
		return
	}
	httpapi.Fail(w, h.log, "proposals API", err, map[error]int{ErrForbidden: http.StatusForbidden, ErrNotFound: http.StatusNotFound, ErrState: http.StatusConflict})
}

func (h *api) propose(w http.ResponseWriter, r *http.Request, dept string) {
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		h.fail(w, &RuleError{Rule: "json", Reason: err.Error()})
		return
	}
	it, err := catalog.ParseItem(req.Item)
	if err != nil {
		h.fail(w, &RuleError{Rule: "item", Reason: "not an item's JSON: " + err.Error()})
		return
	}
	p, err := h.s.Propose(r.Context(), dept, it, req.Reason)
	if err != nil {
		h.fail(w, err)
		return
	}
	httpapi.Reply(w, http.StatusCreated, p)
}

func (h *api) list(w http.ResponseWriter, _ *http.Request, dept string) {
	out := h.s.List(dept)
	if out == nil {
		out = []*Proposal{}
	}
	httpapi.Reply(w, http.StatusOK, out)
}

func (h *api) decide(w http.ResponseWriter, r *http.Request, dept string) {
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
			h.fail(w, &RuleError{Rule: "json", Reason: err.Error()})
			return
		}
	}
	p, err := h.s.Decide(r.Context(), r.PathValue("id"), dept, r.PathValue("verdict"), body.Reason)
	if err != nil {
		h.fail(w, err)
		return
	}
	httpapi.Reply(w, http.StatusOK, p)
}

func (h *api) history(w http.ResponseWriter, r *http.Request, _ string) {
	vs, err := h.s.History(r.PathValue("code"))
	if err != nil {
		h.fail(w, err)
		return
	}
	httpapi.Reply(w, http.StatusOK, vs)
}

func (h *api) diff(w http.ResponseWriter, r *http.Request, _ string) {
	from, err1 := strconv.Atoi(r.URL.Query().Get("from"))
	to, err2 := strconv.Atoi(r.URL.Query().Get("to"))
	if err1 != nil || err2 != nil {
		h.fail(w, &RuleError{Rule: "query", Reason: "from and to must be version numbers"})
		return
	}
	d, err := h.s.DiffVersions(r.PathValue("code"), from, to)
	if err != nil {
		h.fail(w, err)
		return
	}
	if d == nil {
		d = []string{}
	}
	httpapi.Reply(w, http.StatusOK, map[string]any{"item": r.PathValue("code"), "from": from, "to": to, "changes": d})
}
