// Package signed makes the bus's answers that a department keeps as proof
// (a dispute's receipts, an application's decisions) verifiable offline:
// a JSON Web Signature (RFC 7515, compact serialization, alg EdDSA:
// Ed25519) with the bus's audit key, which any JOSE library, or `jutong
// audit verify-document`, checks with the bus's public key.
package signed

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
)

// MediaType is the type of a JWS in compact serialization.
const MediaType = "application/jose"

var header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JOSE","kid":"jutong-audit"}`))

// Sign returns the JWS of payload.
func Sign(key ed25519.PrivateKey, payload []byte) string {
	in := header + "." + base64.RawURLEncoding.EncodeToString(payload)
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(in)))
}

// Verify checks a JWS with pub and returns its payload.
func Verify(pub ed25519.PublicKey, jws string) ([]byte, error) {
	parts := strings.Split(strings.TrimSpace(jws), ".")
	if len(parts) != 3 {
		return nil, errors.New("signed: not a JWS in compact serialization (three parts separated by dots)")
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("signed: header: %w", err)
	}
	var hd struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(h, &hd); err != nil || hd.Alg != "EdDSA" {
		return nil, fmt.Errorf("signed: header %s: want alg EdDSA", h)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signed: signature: %w", err)
	}
	if !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, errors.New("signed: the signature does not verify with the bus's public key: the document was changed, or another key signed it")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("signed: payload: %w", err)
	}
	return payload, nil
}

// Handler answers a GET that asks for MediaType (Accept) with h's answer
// signed, when h answers 200; any other request, and any other answer, is
// h's own.
func Handler(key ed25519.PrivateKey, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.Header.Get("Accept"), MediaType) {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		r2 := r.Clone(r.Context())
		r2.Header.Set("Accept", "application/json")
		h.ServeHTTP(rec, r2)
		if rec.Code != http.StatusOK {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		w.Header().Set("Content-Type", MediaType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(Sign(key, bytes.TrimSpace(rec.Body.Bytes()))))
	})
}
