package localsvc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// password returns the password of the server in dir, kept in
// dir/jutong-password (0600) and made the first time; a throwaway server
// gets a fresh one, kept nowhere.
func password(dir string, throwaway bool) (string, error) {
	path := ""
	if !throwaway {
		path = filepath.Join(dir, "jutong-password")
	}
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
