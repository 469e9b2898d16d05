package dispute

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/jutong/jutong/internal/httpapi"
)

// Handler serves the disputes to departments' officers (bearer tokens:
// department code -> officer's token):
//
//	POST /v1/disputes                   raise (body: Request)
//	GET  /v1/disputes                   those the officer's department may see
//	GET  /v1/disputes/{id}
//	POST /v1/disputes/{id}/reject       the source (body: {"reason": ...})
//	POST /v1/disputes/{id}/correct      the source (body: {"event_id": ...})
func Handler(s *Service, officers map[string]string, log *slog.Logger) http.Handler {
	h := &api{s: s, officers: officers, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/disputes", h.auth(h.raise))
	mux.HandleFunc("GET /v1/disputes", h.auth(h.list))
	mux.HandleFunc("GET /v1/disputes/{id}", h.auth(h.get))
	mux.HandleFunc("POST /v1/disputes/{id}/{action}", h.auth(h.answer))
	return mux
}

type api struct {
	s        *Service
	officers map[string]string
	log      *slog.Logger
}

type apiError = httpapi.Error

func reply(w http.ResponseWriter, code int, v any) { httpapi.Reply(w, code, v) }

func (h *api) fail(w http.ResponseWriter, err error) {
	var re *RequestError
	if errors.As(err, &re) {
		reply(w, http.StatusUnprocessableEntity, apiError{Error: re.Error(), Field: re.Field})
		return
	}
	httpapi.Fail(w, h.log, "dispute API", err, map[error]int{ErrForbidden: http.StatusForbidden, ErrNotFound: http.StatusNotFound, ErrState: http.StatusConflict})
}

func (h *api) auth(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return httpapi.Bearer(h.officers, "a department officer's bearer token is required", next)
}

func (h *api) raise(w http.ResponseWriter, r *http.Request, dept string) {
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, apiError{Error: "body: " + err.Error()})
		return
	}
	d, err := h.s.Raise(r.Context(), dept, req)
	if err != nil {
		h.fail(w, err)
		return
	}
	reply(w, http.StatusCreated, d)
}

func (h *api) list(w http.ResponseWriter, r *http.Request, dept string) {
	out := h.s.List(dept)
	if out == nil {
		out = []*Dispute{}
	}
	reply(w, http.StatusOK, out)
}

func (h *api) get(w http.ResponseWriter, r *http.Request, dept string) {
	d, err := h.s.Get(dept, r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	reply(w, http.StatusOK, d)
}

func (h *api) answer(w http.ResponseWriter, r *http.Request, dept string) {
	var body struct {
		Reason  string `json:"reason"`
		EventID string `json:"event_id"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		reply(w, http.StatusBadRequest, apiError{Error: "body: " + err.Error()})
		return
	}
	var d *Dispute
	var err error
	switch r.PathValue("action") {
	case "reject":
		d, err = h.s.Reject(r.Context(), r.PathValue("id"), dept, body.Reason)
	case "correct":
		d, err = h.s.Correct(r.Context(), r.PathValue("id"), dept, body.EventID)
	default:
		reply(w, http.StatusNotFound, apiError{Error: "unknown action: reject or correct"})
		return
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	reply(w, http.StatusOK, d)
}
