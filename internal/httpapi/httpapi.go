// Package httpapi holds what the bus's JSON APIs for officers share: the
// JSON answer, the error body, authentication by a department's bearer
// token (compared in constant time), and an officer's call (Call).
package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// Error is the body of a refused request; Field names the request's field
// at fault, when one is.
type Error struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// Reply answers v as JSON with code.
func Reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Bearer authenticates a request by its bearer token among tokens
// (department code -> token) and calls next with the department; others
// get 401 with refusal.
func Bearer(tokens map[string]string, refusal string, next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(tok))
		for dept, want := range tokens {
			w2 := sha256.Sum256([]byte(want))
			if tok != "" && subtle.ConstantTimeCompare(got[:], w2[:]) == 1 {
				next(w, r, dept)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="jutong"`)
		Reply(w, http.StatusUnauthorized, Error{Error: refusal})
	}
}

// Fail answers err with the status statuses gives the first sentinel it
// wraps (errors.Is), else 500, logged as what failed.
func Fail(w http.ResponseWriter, log *slog.Logger, what string, err error, statuses map[error]int) {
	for sentinel, code := range statuses {
		if errors.Is(err, sentinel) {
			Reply(w, code, Error{Error: err.Error()})
			return
		}
	}
	log.Error(what, "err", err)
	Reply(w, http.StatusInternalServerError, Error{Error: err.Error()})
}

// StatusError is an API's refusal as a client sees it: the status and the
// error body's message and field.
type StatusError struct {
	Status         int
	Message, Field string
}

func (e *StatusError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// Call makes one officer's call to a bus's JSON API (base: its URL):
// body, when not nil, sent as JSON; the bearer token. It returns the
// answer's body, or a *StatusError for a status of 300 or more.
func Call(ctx context.Context, hc *http.Client, base, token, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return nil, &StatusError{Status: resp.StatusCode, Message: e.Error, Field: e.Field}
	}
	return raw, nil
}
