package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/jutong/jutong/model/catalog"
)

// Department authenticates a department's principal with its password (the
// lookups' and snapshots' HTTP basic auth), in constant time: its code, or
// ok false.
func (c Credentials) Department(cat *catalog.Catalog, user, pass string) (code string, ok bool) {
	want, found := c[user]
	if !found || want == "" {
		return "", false
	}
	hw, hp := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(pass))
	if subtle.ConstantTimeCompare(hw[:], hp[:]) != 1 {
		return "", false
	}
	for _, d := range cat.Departments {
		if d.Principal == user {
			return d.Code, true
		}
	}
	return "", false
}

// Credentials maps a department's principal name to its SCRAM password.
type Credentials map[string]string

// LoadOrCreate reads the credentials file at path, adds a random password
// for every catalog department that has none, and writes it back (mode
// 0600). An empty path keeps the credentials in memory only.
func LoadOrCreate(path string, cat *catalog.Catalog) (Credentials, error) {
	keys := make([]string, len(cat.Departments))
	for i, d := range cat.Departments {
		keys[i] = d.Principal
	}
	return loadOrCreateSecrets(path, keys)
}

// ReadCredentials reads a credentials file that jutong dev (or an operator)
// wrote; unlike LoadOrCreate it never creates one.
func ReadCredentials(path string) (Credentials, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("access: credentials: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("access: %s: %w", path, err)
	}
	return c, nil
}

// LoadOrCreateSecret reads the secret named name from the secrets file at
// path, or makes a random one and writes it (0600; an empty path keeps it
// in memory). jutong dev and demo keep the admin's password so, so that no
// known default password ever runs; the bus its feeds' key secret.
func LoadOrCreateSecret(path, name string) (string, error) {
	m, err := loadOrCreateSecrets(path, []string{name})
	if err != nil {
		return "", err
	}
	return m[name], nil
}

// Tokens maps a department's code to its bearer token for the HTTP gateway.
type Tokens map[string]string

// LoadOrCreateTokens is LoadOrCreate for the gateway's bearer tokens.
func LoadOrCreateTokens(path string, cat *catalog.Catalog) (Tokens, error) {
	keys := make([]string, len(cat.Departments))
	for i, d := range cat.Departments {
		keys[i] = d.Code
	}
	return loadOrCreateSecrets(path, keys)
}

// loadOrCreateSecrets reads a JSON object of secrets, adds a random one for
// each missing key and writes the file back (0600) when it added any.
func loadOrCreateSecrets(path string, keys []string) (map[string]string, error) {
	creds := map[string]string{}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			if err := json.Unmarshal(b, &creds); err != nil {
				return nil, fmt.Errorf("access: %s: %w", path, err)
			}
		}
	}
	added := false
	for _, k := range keys {
		if creds[k] == "" {
			creds[k] = newPassword()
			added = true
		}
	}
	if added && path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		b, _ := json.MarshalIndent(creds, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			return nil, err
		}
	}
	return creds, nil
}

func newPassword() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// EnsureUsers creates or updates a SCRAM-SHA-256 user for every department.
func EnsureUsers(ctx context.Context, adm *kadm.Client, cat *catalog.Catalog, creds Credentials) error {
	var ups []kadm.UpsertSCRAM
	for _, d := range cat.Departments {
		pw := creds[d.Principal]
		if pw == "" {
			return fmt.Errorf("access: no password for %s", d.Principal)
		}
		// 4096 is Kafka's minimum. kfake (the embedded cluster) always
		// announces 4096 in its SCRAM exchange, whatever a user was created
		// with, so any other count fails authentication there.
		ups = append(ups, kadm.UpsertSCRAM{User: d.Principal, Mechanism: kadm.ScramSha256, Iterations: 4096, Password: pw})
	}
	sort.Slice(ups, func(i, j int) bool { return ups[i].User < ups[j].User })
	res, err := adm.AlterUserSCRAMs(ctx, nil, ups)
	if err != nil {
		return fmt.Errorf("access: create users: %w", err)
	}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("access: user %s: %w", r.User, r.Err)
		}
	}
	return nil
}

// Rotate gives a department's principal a new SCRAM password: on the
// cluster first, then in the credentials file (0600), so that a failure
// leaves the old password working. It returns the new password.
func Rotate(ctx context.Context, adm *kadm.Client, path string, d *catalog.Department) (string, error) {
	creds, err := ReadCredentials(path)
	if err != nil {
		return "", err
	}
	pw := newPassword()
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: d.Principal, Mechanism: kadm.ScramSha256, Iterations: 4096, Password: pw}})
	if err == nil {
		for _, r := range res {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("access: rotate %s: %w", d.Principal, err)
	}
	creds[d.Principal] = pw
	b, _ := json.MarshalIndent(creds, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("access: the cluster has %s's new password but %s could not be written: %w", d.Principal, path, err)
	}
	return pw, nil
}

// ReadSecret reads the secret called name from path, which must hold it.
func ReadSecret(path, name string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("access: %s: %w", path, err)
	}
	if m[name] == "" {
		return "", fmt.Errorf("no secret for %s", name)
	}
	return m[name], nil
}

// LoadOrCreateSecrets is LoadOrCreateSecret for several names, with one
// read of path (and one write, when some were missing).
func LoadOrCreateSecrets(path string, names []string) (map[string]string, error) {
	return loadOrCreateSecrets(path, names)
}
