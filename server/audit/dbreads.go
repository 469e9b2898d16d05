package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// DBRead is a department's database role's reads (Records: the rows read;
// Keys: the tables its statements name; Detail: the statement,
// normalized: no literal value).
const DBRead = "db_read"

// DBReads audits what the departments' database roles read, from
// PostgreSQL's own statistics (pg_stat_statements: every statement a role
// ran, normalized, with its calls and rows, kept by the server whatever
// client the role uses). Each poll turns the advance of those counters
// since the last poll into one db_read event per role and statement; the
// counters seen are kept in PositionsTopic, in the same transaction, so a
// restart neither repeats nor loses a read.
type DBReads struct {
	k          []kgo.Opt
	pool       *pgxpool.Pool
	rolePrefix string
	cl         *kgo.Client
	chain      *Chain
	last       map[string]dbCounter
	lastAt     time.Time
	loaded     bool
}

type dbCounter struct {
	Calls int64     `json:"calls"`
	Rows  int64     `json:"rows"`
	At    time.Time `json:"at"`
}

// NewDBReads makes the auditor of the roles beginning with rolePrefix on
// the database pool reaches; prefix begins its transactional id
// (<prefix>audit.dbreads).
func NewDBReads(k []kgo.Opt, prefix string, key ed25519.PrivateKey, pool *pgxpool.Pool, rolePrefix string) (*DBReads, error) {
	cl, err := kafkaconn.NewClient(k, kgo.TransactionalID(prefix+"audit.dbreads"))
	if err != nil {
		return nil, err
	}
	c := NewChain(key, "dbreads")
	c.last = lastRecordHash(k, Topic)
	return &DBReads{k: k, pool: pool, rolePrefix: rolePrefix, cl: cl, chain: c, last: map[string]dbCounter{}}, nil
}

// Close closes the auditor's client.
func (d *DBReads) Close() { d.cl.Close() }

// relations finds the schema-qualified tables a statement names.
var relations = regexp.MustCompile(`(?i)\b(?:from|join)\s+("?[a-z_][\w]*"?\s*\.\s*"?[a-z_][\w]*"?)`)

// Tables lists the schema-qualified tables statement reads from.
func Tables(statement string) []string {
	var out []string
	for _, m := range relations.FindAllStringSubmatch(statement, -1) {
		t := strings.ReplaceAll(strings.ReplaceAll(m[1], `"`, ""), " ", "")
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Poll audits the reads since the last poll and returns the events written.
func (d *DBReads) Poll(ctx context.Context) ([]Event, error) {
	if !d.loaded {
		if _, err := d.pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
			return nil, fmt.Errorf("audit: reads of the database cannot be audited (pg_stat_statements: shared_preload_libraries, docs/security.md): %w", err)
		}
		err := kafkaconn.ReadAll(ctx, d.k, PositionsTopic, func(rec *kgo.Record) {
			var c dbCounter
			if k := string(rec.Key); strings.HasPrefix(k, "pg|") && json.Unmarshal(rec.Value, &c) == nil {
				d.last[k] = c
				if c.At.After(d.lastAt) {
					d.lastAt = c.At
				}
			}
		})
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		d.loaded = true
	}
	rows, err := d.pool.Query(ctx, `SELECT r.rolname, s.queryid, s.query, s.calls, s.rows
		FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
		WHERE starts_with(r.rolname, $1) AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, d.rolePrefix)
	if err != nil {
		return nil, fmt.Errorf("audit: pg_stat_statements: %w", err)
	}
	now := time.Now().UTC()
	start := d.lastAt
	if start.IsZero() {
		start = now
	}
	var evs []Event
	moved := map[string]dbCounter{}
	for rows.Next() {
		var role, query string
		var id, calls, n int64
		if err := rows.Scan(&role, &id, &query, &calls, &n); err != nil {
			rows.Close()
			return nil, err
		}
		key := "pg|" + role + "|" + strconv.FormatInt(id, 10)
		prev := d.last[key]
		if calls < prev.Calls { // the statistics were reset
			prev = dbCounter{}
		}
		if calls == prev.Calls {
			continue
		}
		dept := strings.TrimPrefix(role, d.rolePrefix)
		evs = append(evs, Event{Time: now, Kind: DBRead, Department: dept, Actor: dept, Group: "postgres " + role,
			Records: n - prev.Rows, Keys: Tables(query), WindowStart: start, WindowEnd: now,
			Detail: fmt.Sprintf("postgres: %d statement(s): %s", calls-prev.Calls, query)})
		moved[key] = dbCounter{Calls: calls, Rows: n, At: now}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, nil
	}
	s, err := d.chain.seal(ctx, append(evs, Event{Kind: ChainHead, Actor: "jutong", Detail: headDetail}))
	if err != nil {
		return nil, err
	}
	var recs []*kgo.Record
	for _, v := range s.values {
		recs = append(recs, &kgo.Record{Topic: Topic, Value: v})
	}
	for key, c := range moved {
		b, _ := json.Marshal(c)
		recs = append(recs, &kgo.Record{Topic: PositionsTopic, Key: []byte(key), Value: b})
	}
	if err := d.cl.BeginTransaction(); err != nil {
		s.done(false, false)
		return nil, err
	}
	if err := d.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		aerr := d.cl.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort)
		s.done(false, aerr != nil)
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := d.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		s.done(false, true)
		return nil, fmt.Errorf("audit: %w", err)
	}
	s.done(true, false)
	for key, c := range moved {
		d.last[key] = c
	}
	d.lastAt = now
	return evs, nil
}
