// Package httpapi holds what the bus's JSON APIs for officers share: the
// JSON answer, the error body, and authentication by a department's
// bearer token (compared in constant time).
package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
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
