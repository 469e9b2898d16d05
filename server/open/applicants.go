package open

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/time/rate"
)

// ApplicantsDDL keeps the conditional-open applicants in the bus's
// PostgreSQL database (the instances share it): their keys as SHA-256
// only, the items and the use they stated, the authority's decision.
const ApplicantsDDL = `CREATE SCHEMA IF NOT EXISTS jutong;
CREATE TABLE IF NOT EXISTS jutong.open_applicants (
  id text PRIMARY KEY,
  organisation text NOT NULL,
  contact text NOT NULL,
  use text NOT NULL,
  items text[] NOT NULL,
  key_sha256 text NOT NULL UNIQUE,
  state text NOT NULL DEFAULT 'pending',
  reason text NOT NULL DEFAULT '',
  decided_by text NOT NULL DEFAULT '',
  submitted timestamptz NOT NULL DEFAULT now(),
  decided timestamptz
)`

// Applicant is an organisation or developer registered for conditional-open
// items (有条件开放).
type Applicant struct {
	ID           string    `json:"id"`
	Organisation string    `json:"organisation"`
	Contact      string    `json:"contact"`
	Use          string    `json:"use"`
	Items        []string  `json:"items"`
	State        string    `json:"state"` // pending, approved, refused
	Reason       string    `json:"reason,omitempty"`
	DecidedBy    string    `json:"decided_by,omitempty"`
	Submitted    time.Time `json:"submitted"`
}

// Applicants are the conditional-open applicants and their keys.
type Applicants struct {
	DB *pgxpool.Pool
	// Rate is the calls a second one key may make (5 when 0).
	Rate float64

	once    sync.Once
	initErr error
	mu      sync.Mutex
	limits  map[string]*rate.Limiter
}

func (a *Applicants) init(ctx context.Context) error {
	a.once.Do(func() { _, a.initErr = a.DB.Exec(ctx, ApplicantsDDL) })
	return a.initErr
}

func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// ErrBadRequest is an application the bus refuses as it stands.
var ErrBadRequest = errors.New("open: bad application")

// Register records an application and returns it with its key, shown
// this once (only its SHA-256 is kept).
func (a *Applicants) Register(ctx context.Context, ap Applicant, conditional func(item string) bool) (*Applicant, string, error) {
	if err := a.init(ctx); err != nil {
		return nil, "", err
	}
	ap.Organisation, ap.Contact, ap.Use = strings.TrimSpace(ap.Organisation), strings.TrimSpace(ap.Contact), strings.TrimSpace(ap.Use)
	switch {
	case ap.Organisation == "" || len(ap.Organisation) > 200:
		return nil, "", fmt.Errorf("%w: organisation is required (at most 200 bytes)", ErrBadRequest)
	case ap.Contact == "" || len(ap.Contact) > 200:
		return nil, "", fmt.Errorf("%w: contact is required (at most 200 bytes)", ErrBadRequest)
	case len(ap.Use) < 10 || len(ap.Use) > 2000:
		return nil, "", fmt.Errorf("%w: use must say what the data is for (10 to 2000 bytes)", ErrBadRequest)
	case len(ap.Items) == 0 || len(ap.Items) > 50:
		return nil, "", fmt.Errorf("%w: items: 1 to 50 conditional-open items", ErrBadRequest)
	}
	for _, it := range ap.Items {
		if !conditional(it) {
			return nil, "", fmt.Errorf("%w: items: %q is not a conditional-open item", ErrBadRequest, it)
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	ap.ID = "oa-" + hex.EncodeToString(b[:6])
	_, _ = rand.Read(b[:])
	key := "jok_" + hex.EncodeToString(b[:])
	ap.State, ap.Submitted = "pending", time.Now().UTC()
	if _, err := a.DB.Exec(ctx, `INSERT INTO jutong.open_applicants (id, organisation, contact, use, items, key_sha256, submitted) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		ap.ID, ap.Organisation, ap.Contact, ap.Use, ap.Items, hashKey(key), ap.Submitted); err != nil {
		return nil, "", err
	}
	return &ap, key, nil
}

// Decide approves or refuses an application (the data authority).
func (a *Applicants) Decide(ctx context.Context, id, by string, approve bool, reason string) (*Applicant, error) {
	if err := a.init(ctx); err != nil {
		return nil, err
	}
	state := "refused"
	if approve {
		state = "approved"
	}
	tag, err := a.DB.Exec(ctx, `UPDATE jutong.open_applicants SET state = $2, reason = $3, decided_by = $4, decided = now() WHERE id = $1 AND state = 'pending'`, id, state, reason, by)
	if err != nil {
		return nil, err
	}
	if tag.RowsAffected() == 0 {
		return nil, fmt.Errorf("%w: no pending application %s", ErrBadRequest, id)
	}
	return a.get(ctx, "id = $1", id)
}

// List lists the applications, the newest first.
func (a *Applicants) List(ctx context.Context) ([]*Applicant, error) {
	if err := a.init(ctx); err != nil {
		return nil, err
	}
	rows, err := a.DB.Query(ctx, `SELECT id, organisation, contact, use, items, state, reason, decided_by, submitted FROM jutong.open_applicants ORDER BY submitted DESC`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanApplicant)
}

func scanApplicant(r pgx.CollectableRow) (*Applicant, error) {
	var ap Applicant
	err := r.Scan(&ap.ID, &ap.Organisation, &ap.Contact, &ap.Use, &ap.Items, &ap.State, &ap.Reason, &ap.DecidedBy, &ap.Submitted)
	return &ap, err
}

func (a *Applicants) get(ctx context.Context, where string, arg any) (*Applicant, error) {
	rows, err := a.DB.Query(ctx, `SELECT id, organisation, contact, use, items, state, reason, decided_by, submitted FROM jutong.open_applicants WHERE `+where, arg)
	if err != nil {
		return nil, err
	}
	return pgx.CollectExactlyOneRow(rows, scanApplicant)
}

// Denied is a refusal of a key, with its HTTP status.
type Denied struct {
	Status int
	Reason string
}

func (d *Denied) Error() string { return d.Reason }

// Authorize checks a key for item: known (401), approved and for that item
// (403), within its rate (429). It returns the applicant.
func (a *Applicants) Authorize(ctx context.Context, key, item string) (*Applicant, error) {
	if err := a.init(ctx); err != nil {
		return nil, err
	}
	if key == "" {
		return nil, &Denied{401, "a conditional-open item needs an approved applicant's key (Authorization: Bearer <key>); register at POST /open/v1/applicants"}
	}
	h := hashKey(key)
	ap, err := a.get(ctx, "key_sha256 = $1", h)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &Denied{401, "unknown key"}
	}
	if err != nil {
		return nil, err
	}
	switch {
	case ap.State != "approved":
		return nil, &Denied{403, "the application " + ap.ID + " is " + ap.State}
	case !slices.Contains(ap.Items, item):
		return nil, &Denied{403, "the application " + ap.ID + " does not cover " + item}
	}
	a.mu.Lock()
	if a.limits == nil {
		a.limits = map[string]*rate.Limiter{}
	}
	lim := a.limits[ap.ID]
	if lim == nil {
		r := a.Rate
		if r <= 0 {
			r = 5
		}
		lim = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		a.limits[ap.ID] = lim
	}
	a.mu.Unlock()
	if !lim.Allow() {
		return nil, &Denied{429, "over the key's rate"}
	}
	return ap, nil
}
