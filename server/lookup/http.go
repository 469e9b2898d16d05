package lookup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Handler serves the lookups:
//
//	GET /v1/items/{code}/records/{key}?purpose=P
//	GET /v1/items/{code}/records?field=F&value=V&purpose=P[&limit=N][&after=CURSOR]
//	GET /v1/items/{code}/snapshot?purpose=P   (NDJSON: Start, records, end)
//
// with HTTP basic auth (a department's principal and Kafka password).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/items/{code}/records/{key}", s.auth("key", s.byKey))
	mux.HandleFunc("GET /v1/items/{code}/records", s.auth("field", s.byField))
	mux.HandleFunc("GET /v1/items/{code}/snapshot", s.auth("snapshot", s.snapshot))
	return mux
}

type apiError struct {
	Error string `json:"error"`
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// auth authenticates the department and answers refusals; next returns
// the outcome it answered with.
func (s *Service) auth(kind string, next func(http.ResponseWriter, *http.Request, string) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		code := r.PathValue("code")
		user, pass, ok := r.BasicAuth()
		dept := ""
		if ok {
			dept, ok = s.cfg.Authenticate(user, pass)
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="jutong lookups"`)
			reply(w, http.StatusUnauthorized, apiError{"a department's principal and Kafka password are required (HTTP basic auth)"})
			s.m.calls.WithLabelValues(code, "", "unauthenticated").Inc()
			return
		}
		outcome, err := next(w, r, dept)
		if err != nil {
			outcome = s.fail(w, err)
		}
		s.m.calls.WithLabelValues(code, dept, outcome).Inc()
		s.m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	}
}

// fail answers an error and returns its outcome.
func (s *Service) fail(w http.ResponseWriter, err error) string {
	var d *Denied
	if !errors.As(err, &d) {
		if errors.Is(err, context.Canceled) {
			return "error"
		}
		s.cfg.Log.Error("lookup failed", "err", err)
		reply(w, http.StatusInternalServerError, apiError{"the lookup failed: " + err.Error()})
		return "error"
	}
	if d.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.RetryAfter.Seconds()))))
	}
	reply(w, d.Status, apiError{d.Reason})
	switch d.Status {
	case 400:
		return "bad_request"
	case 403:
		return "forbidden"
	case 404:
		return "not_found"
	case 429:
		return "rate_limited"
	case 503:
		return "unavailable"
	}
	return "error"
}

type recordAnswer struct {
	Item   string  `json:"item"`
	Grant  string  `json:"grant"`
	Record *Record `json:"record"`
}

func (s *Service) byKey(w http.ResponseWriter, r *http.Request, dept string) (string, error) {
	code := r.PathValue("code")
	rec, g, err := s.ByKey(r.Context(), dept, code, r.PathValue("key"), r.URL.Query().Get("purpose"))
	if err != nil {
		return "", err
	}
	if rec == nil {
		// Nothing about what a masked key might be: the same answer for
		// every key that is not there.
		reply(w, http.StatusNotFound, apiError{"no record of " + code + " has this key"})
		return "not_found", nil
	}
	if wantsAvro(r) {
		if err := s.replyAvro(w, r, dept, s.cfg.Catalog.Item(code), g, []Record{*rec}, ""); err != nil {
			return "", err
		}
		return "found", nil
	}
	reply(w, http.StatusOK, recordAnswer{Item: code, Grant: g.ID, Record: rec})
	return "found", nil
}

type pageAnswer struct {
	Item  string `json:"item"`
	Grant string `json:"grant"`
	Field string `json:"field"`
	*Page
}

func (s *Service) byField(w http.ResponseWriter, r *http.Request, dept string) (string, error) {
	q := r.URL.Query()
	code, field := r.PathValue("code"), q.Get("field")
	if field == "" || q.Get("value") == "" {
		return "", &Denied{Status: 400, Reason: "field and value are required (?field=...&value=...), or ask by key: /v1/items/" + code + "/records/{key}"}
	}
	limit := 0
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return "", &Denied{Status: 400, Reason: "limit: a positive number"}
		}
		limit = n
	}
	page, g, err := s.ByField(r.Context(), dept, code, field, q.Get("value"), q.Get("purpose"), q.Get("after"), limit)
	if err != nil {
		return "", err
	}
	if wantsAvro(r) {
		if err := s.replyAvro(w, r, dept, s.cfg.Catalog.Item(code), g, page.Records, page.Next); err != nil {
			return "", err
		}
	} else {
		reply(w, http.StatusOK, pageAnswer{Item: code, Grant: g.ID, Field: field, Page: page})
	}
	if len(page.Records) == 0 {
		return "not_found", nil
	}
	return "found", nil
}

// snapshot streams NDJSON: the Start line, a line per record, and an end
// line with the count (or an error line: the stream is then incomplete).
func (s *Service) snapshot(w http.ResponseWriter, r *http.Request, dept string) (string, error) {
	enc := json.NewEncoder(w)
	started := false
	rc := http.NewResponseController(w)
	sent := 0
	var line []byte
	n, err := s.Snapshot(r.Context(), dept, r.PathValue("code"), r.URL.Query().Get("purpose"), func(st Start) error {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		started = true
		return enc.Encode(st)
	}, func(rec *Record) error {
		var err error
		if line, err = rec.AppendJSON(line[:0]); err != nil {
			return err
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
		// A long snapshot is not cut by the server's write timeout: each
		// thousand records flushed buy a minute more.
		if sent++; sent%1000 == 0 {
			if err := rc.Flush(); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
			if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				return fmt.Errorf("write deadline: %w", err)
			}
		}
		return nil
	})
	if err != nil && !started {
		return "", err
	}
	if err != nil {
		_ = enc.Encode(map[string]string{"error": "the snapshot stopped: " + err.Error() + "; take it again"})
		return "error", nil
	}
	_ = enc.Encode(map[string]any{"end": true, "records": n})
	return "snapshot", nil
}
