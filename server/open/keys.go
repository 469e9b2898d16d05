package open

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/server/audit"
)

// OpenRecords is the audit kind of a page of the records API.
const OpenRecords = audit.OpenRecords

func apiKey(r *http.Request) string {
	if k, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(k)
	}
	return r.Header.Get("X-API-Key")
}

func jsonReply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type apiError struct {
	Error string `json:"error"`
}

// access decides whether r may read item's data: anyone for an
// unconditional item; an approved applicant's key for a conditional one.
// who is whom the audit names.
func (s *Server) access(w http.ResponseWriter, r *http.Request, it *catalog.Item) (who string, ok bool) {
	if Open(it) {
		return "public", true
	}
	if it.Open != catalog.ShareConditional || s.Applicants == nil {
		http.Error(w, "no open dataset "+it.Code, http.StatusNotFound)
		return "", false
	}
	ap, err := s.Applicants.Authorize(r.Context(), apiKey(r), it.Code)
	var d *Denied
	if errors.As(err, &d) {
		if d.Status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, it.Code+" is open on conditions (有条件开放): "+d.Reason, d.Status)
		return "", false
	}
	if err != nil {
		http.Error(w, "the key could not be checked: retry", http.StatusServiceUnavailable)
		return "", false
	}
	return "applicant:" + ap.ID, true
}

// register serves POST /open/v1/applicants: an organisation or developer
// applies for conditional-open items and gets its key, once. JSON only (a
// form of another site cannot post it).
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		jsonReply(w, http.StatusUnsupportedMediaType, apiError{"Content-Type: application/json"})
		return
	}
	var ap Applicant
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&ap); err != nil {
		jsonReply(w, http.StatusBadRequest, apiError{"body: " + err.Error()})
		return
	}
	out, key, err := s.Applicants.Register(r.Context(), ap, func(code string) bool {
		it := s.Catalog.Item(code)
		return it != nil && it.Open == catalog.ShareConditional
	})
	if errors.Is(err, ErrBadRequest) {
		jsonReply(w, http.StatusUnprocessableEntity, apiError{err.Error()})
		return
	}
	if err != nil {
		jsonReply(w, http.StatusServiceUnavailable, apiError{"not registered: retry"})
		return
	}
	if s.Audit != nil {
		_ = s.Audit(r.Context(), audit.Event{Kind: audit.OpenApplied, Department: "public", Actor: "applicant:" + out.ID, Detail: out.Organisation + ": " + strings.Join(out.Items, ",")})
	}
	jsonReply(w, http.StatusCreated, map[string]any{"applicant": out, "key": key,
		"note": "the key is shown this once; it works once the data authority approves the application"})
}

// authority says whether r carries the data authority's officer token.
func (s *Server) authority(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.AuthorityToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.AuthorityToken)) == 1
}

func (s *Server) listApplicants(w http.ResponseWriter, r *http.Request) {
	if !s.authority(r) {
		jsonReply(w, http.StatusUnauthorized, apiError{"the data authority's officer token is required"})
		return
	}
	out, err := s.Applicants.List(r.Context())
	if err != nil {
		jsonReply(w, http.StatusServiceUnavailable, apiError{err.Error()})
		return
	}
	jsonReply(w, http.StatusOK, out)
}

func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	if !s.authority(r) {
		jsonReply(w, http.StatusUnauthorized, apiError{"the data authority's officer token is required"})
		return
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body)
	}
	action := r.PathValue("action")
	if action != "approve" && action != "refuse" {
		jsonReply(w, http.StatusNotFound, apiError{"approve or refuse"})
		return
	}
	ap, err := s.Applicants.Decide(r.Context(), r.PathValue("id"), "authority", action == "approve", body.Reason)
	if errors.Is(err, ErrBadRequest) {
		jsonReply(w, http.StatusConflict, apiError{err.Error()})
		return
	}
	if err != nil {
		jsonReply(w, http.StatusServiceUnavailable, apiError{err.Error()})
		return
	}
	if s.Audit != nil {
		kind := audit.OpenRefused
		if action == "approve" {
			kind = audit.OpenApproved
		}
		_ = s.Audit(r.Context(), audit.Event{Kind: kind, Department: "public", Actor: "authority", Application: ap.ID, Detail: body.Reason})
	}
	jsonReply(w, http.StatusOK, ap)
}

// records serves GET /open/v1/datasets/{item}/records?limit=&cursor=: the
// newest release, a page at a time (cursor: opaque, for the next page).
func (s *Server) records(w http.ResponseWriter, r *http.Request) {
	it := s.Catalog.Item(r.PathValue("item"))
	if it == nil || !Listed(it) {
		jsonReply(w, http.StatusNotFound, apiError{"no open dataset " + r.PathValue("item")})
		return
	}
	who, ok := s.access(w, r, it)
	if !ok {
		return
	}
	rel := s.Releases.Latest(it.Code)
	if rel == nil {
		jsonReply(w, http.StatusNotFound, apiError{"no release of " + it.Code + " yet"})
		return
	}
	limit := 100
	if v, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && v > 0 {
		limit = min(v, 1000)
	}
	from := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		id, n, ok := strings.Cut(string(b), ":")
		if from, _ = strconv.Atoi(n); err != nil || !ok || from < 0 {
			jsonReply(w, http.StatusBadRequest, apiError{"cursor: not one this API gave"})
			return
		}
		if id != rel.ID {
			jsonReply(w, http.StatusGone, apiError{"cursor: its release " + id + " was replaced by " + rel.ID + ": start again"})
			return
		}
	}
	path, _, ok := s.Releases.File(it.Code, rel.ID, "json")
	if !ok {
		jsonReply(w, http.StatusNotFound, apiError{"the release is gone"})
		return
	}
	f, err := os.Open(path)
	if err != nil {
		jsonReply(w, http.StatusNotFound, apiError{"the release is gone"})
		return
	}
	defer f.Close()
	page := make([]json.RawMessage, 0, limit)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	row := -1
	for sc.Scan() {
		line := bytes.TrimSuffix(bytes.TrimSpace(sc.Bytes()), []byte(","))
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		row++
		if row < from {
			continue
		}
		if len(page) == limit {
			break
		}
		page = append(page, json.RawMessage(bytes.Clone(line)))
	}
	next := ""
	if from+len(page) < rel.Rows {
		next = base64.RawURLEncoding.EncodeToString([]byte(rel.ID + ":" + strconv.Itoa(from+len(page))))
	}
	if s.Audit != nil {
		if err := s.Audit(r.Context(), audit.Event{Kind: OpenRecords, Department: "public", Actor: who, Item: it.Code, Records: int64(len(page)),
			Detail: "release " + rel.ID + " rows " + strconv.Itoa(from) + "+" + strconv.Itoa(len(page))}); err != nil {
			jsonReply(w, http.StatusServiceUnavailable, apiError{"not audited, so not served: retry"})
			return
		}
	}
	jsonReply(w, http.StatusOK, map[string]any{"release": rel.ID, "records": page, "next": next, "total": rel.Rows})
}
