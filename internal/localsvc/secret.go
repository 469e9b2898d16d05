package localsvc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
)

// password returns the server's password kept in path (0600), making a
// random one the first time; throwaway servers pass "" and get a fresh one.
func password(path string) (string, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err == nil && len(strings.TrimSpace(string(b))) >= 16 {
			return strings.TrimSpace(string(b)), nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(b[:])
	if path != "" {
		if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
			return "", err
		}
	}
	return pw, nil
}

// Redact returns a URL DSN with its password replaced, for logs and
// printed summaries.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); !ok {
		return dsn
	}
	return u.Redacted()
}
