package registry

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
)

// Access says who may use the registry, with HTTP basic authentication as
// Confluent's registry does (clients set basic.auth.user.info, sr.BasicAuth,
// hamba's WithBasicAuth). The bus's admin may do everything; a reader (a
// department's principal, with its Kafka password) may only read: list,
// fetch, look up a schema and test compatibility. Registering, deleting and
// changing the compatibility level are the admin's alone, so a department
// cannot squat, replace or loosen another's subject.
type Access struct {
	Admin, AdminPassword string
	// Reader returns a reader principal's password, and whether it exists.
	Reader func(user string) (password string, ok bool)
}

// isRead tells whether a request only reads: GETs, and the two POSTs that
// look a schema up or test it without changing anything.
func isRead(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodPost:
		p := r.URL.Path
		if strings.HasPrefix(p, "/compatibility/") {
			return true
		}
		// POST /subjects/{subject} is a lookup; POST .../versions registers.
		return strings.HasPrefix(p, "/subjects/") && !strings.HasSuffix(p, "/versions")
	}
	return false
}

// guard authenticates every request and lets readers read only.
func (a Access) guard(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		admin := ok && user == a.Admin && a.Admin != "" && same(pass, a.AdminPassword)
		reader := false
		if ok && !admin && a.Reader != nil {
			if want, found := a.Reader(user); found && want != "" {
				reader = same(pass, want)
			}
		}
		switch {
		case !admin && !reader:
			// Refused before the body is read: an anonymous client cannot
			// hold the connection with a slow body.
			w.Header().Set("WWW-Authenticate", `Basic realm="jutong schema registry"`)
			deny(w, http.StatusUnauthorized, 401, "Unauthorized: HTTP basic authentication with a bus principal is required")
			log.Warn("registry request refused: not authenticated", "method", r.Method, "path", r.URL.Path, "user", user, "remote", r.RemoteAddr)
		case reader && !isRead(r):
			deny(w, http.StatusForbidden, 40301, "User "+user+" is denied operation "+r.Method+" "+r.URL.Path+": only the bus's admin (jutong catalog apply) registers schemas, deletes or changes configuration")
			log.Warn("registry write refused", "method", r.Method, "path", r.URL.Path, "user", user, "remote", r.RemoteAddr)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func deny(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
}

// same compares two secrets in constant time (over their hashes, so that
// the length does not leak either).
func same(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
