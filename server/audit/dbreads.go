package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
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
	k    []kgo.Opt
	pool *pgxpool.Pool
	// CH, when set, is the ClickHouse server whose analysts' queries
	// (system.query_log) are audited as well.
	CH         driver.Conn
	rolePrefix string
	cl         *kgo.Client
	chain      *Chain
	// Metrics, when set, counts the reads written.
	Metrics *Metrics
	last    map[string]dbCounter
	lastAt  time.Time
	loaded  bool
}

type dbCounter struct {
	Calls int64     `json:"calls"`
	Rows  int64     `json:"rows"`
	At    time.Time `json:"at"`
}

// NewDBReads makes the auditor of the roles beginning with rolePrefix on
// the database pool reaches; prefix begins its transactional id
// (<prefix>audit.dbreads).
func NewDBReads(k []kgo.Opt, prefix string, key ed25519.PrivateKey, pool *pgxpool.Pool, rolePrefix string, ch driver.Conn) (*DBReads, error) {
	cl, err := kafkaconn.NewClient(k, kgo.TransactionalID(prefix+"audit.dbreads"))
	if err != nil {
		return nil, err
	}
	c := NewChain(key, "dbreads")
	c.last = lastRecordHash(k, Topic)
	return &DBReads{k: k, pool: pool, CH: ch, rolePrefix: rolePrefix, cl: cl, chain: c, last: map[string]dbCounter{}}, nil
}

// Close closes the auditor's client.
func (d *DBReads) Close() { d.cl.Close() }

// relations finds the tables a statement names (schema-qualified or not).
var relations = regexp.MustCompile("(?i)\\b(?:from|join)\\s+([\"`]?[a-z_][\\w]*[\"`]?(?:\\s*\\.\\s*[\"`]?[a-z_][\\w]*[\"`]?)?)")

// Tables lists the tables statement reads from, as it names them.
func Tables(statement string) []string {
	var out []string
	for _, m := range relations.FindAllStringSubmatch(statement, -1) {
		t := strings.NewReplacer(`"`, "", "`", "", " ", "").Replace(m[1])
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Poll audits the reads since the last poll and returns the events written.
func (d *DBReads) Poll(ctx context.Context) ([]Event, error) {
	if !d.loaded {
		if d.pool != nil {
			if _, err := d.pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
				return nil, fmt.Errorf("audit: reads of the database cannot be audited (pg_stat_statements: shared_preload_libraries, docs/security.md): %w", err)
			}
		}
		err := kafkaconn.ReadAll(ctx, d.k, PositionsTopic, func(rec *kgo.Record) {
			var c dbCounter
			if k := string(rec.Key); (strings.HasPrefix(k, "pg|") || strings.HasPrefix(k, "ch|")) && json.Unmarshal(rec.Value, &c) == nil {
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
	now := time.Now().UTC()
	start := d.lastAt
	if start.IsZero() {
		start = now
	}
	var evs []Event
	moved := map[string]dbCounter{}
	if d.pool != nil {
		if err := d.pollPostgres(ctx, start, now, &evs, moved); err != nil {
			return nil, err
		}
	}
	if d.CH != nil {
		if err := d.pollClickHouse(ctx, start, now, &evs, moved); err != nil {
			return nil, err
		}
	}
	if len(evs) == 0 {
		return nil, nil
	}
	return d.write(ctx, evs, moved, now)
}

// pollPostgres adds the roles' statements since the last poll.
func (d *DBReads) pollPostgres(ctx context.Context, start, now time.Time, evs *[]Event, moved map[string]dbCounter) error {
	rows, err := d.pool.Query(ctx, `SELECT r.rolname, s.queryid, s.query, s.calls, s.rows
		FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
		WHERE starts_with(r.rolname, $1) AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, d.rolePrefix)
	if err != nil {
		return fmt.Errorf("audit: pg_stat_statements: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var role, query string
		var id, calls, n int64
		if err := rows.Scan(&role, &id, &query, &calls, &n); err != nil {
			return err
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
		*evs = append(*evs, Event{Time: now, Kind: DBRead, Department: dept, Actor: dept, Group: "postgres " + role,
			Records: n - prev.Rows, Keys: Tables(query), WindowStart: start, WindowEnd: now,
			Detail: fmt.Sprintf("postgres: %d statement(s): %s", calls-prev.Calls, query)})
		moved[key] = dbCounter{Calls: calls, Rows: n, At: now}
	}
	return rows.Err()
}

// pollClickHouse adds the analysts' queries that finished since the last
// poll (system.query_log, flushed first: a query is taken once its second
// of the log is over, each second once).
func (d *DBReads) pollClickHouse(ctx context.Context, _, now time.Time, evs *[]Event, moved map[string]dbCounter) error {
	if err := d.CH.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		return fmt.Errorf("audit: clickhouse query_log: %w", err)
	}
	upTo := now.Add(-2 * time.Second).Truncate(time.Second)
	rows, err := d.CH.Query(ctx, `SELECT user, query, toInt64(read_rows), toInt64(result_rows), event_time FROM system.query_log
		WHERE type = 2 AND startsWith(user, ?) AND event_time <= ? AND event_date >= toDate(?) - 1 ORDER BY event_time`,
		d.rolePrefix+"analyst_", upTo, upTo)
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && ex.Code == 60 {
		return nil // no query logged yet: the server makes the table with its first
	}
	if err != nil {
		return fmt.Errorf("audit: clickhouse query_log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var user, query string
		var read, result int64
		var at time.Time
		if err := rows.Scan(&user, &query, &read, &result, &at); err != nil {
			return err
		}
		key := "ch|" + user
		last := d.last[key]
		if !at.After(last.At) && !last.At.IsZero() {
			continue
		}
		if last.At.IsZero() && at.Before(now.Add(-24*time.Hour)) {
			continue // before the bus audited this server
		}
		dept := strings.TrimPrefix(user, d.rolePrefix+"analyst_")
		*evs = append(*evs, Event{Time: now, Kind: DBRead, Department: dept, Actor: dept, Group: "clickhouse " + user,
			Records: result, Keys: Tables(query), WindowStart: at.UTC(), WindowEnd: at.UTC(),
			Detail: fmt.Sprintf("clickhouse: %d rows read: %s", read, query)})
		if at.After(moved[key].At) {
			moved[key] = dbCounter{At: at.UTC()}
		}
	}
	return rows.Err()
}

// write writes the events and the counters in one transaction.
func (d *DBReads) write(ctx context.Context, evs []Event, moved map[string]dbCounter, now time.Time) ([]Event, error) {
	var positions []*kgo.Record
	for key, c := range moved {
		b, _ := json.Marshal(c)
		positions = append(positions, &kgo.Record{Topic: PositionsTopic, Key: []byte(key), Value: b})
	}
	if err := writeSealed(ctx, d.cl, d.chain, evs, positions); err != nil {
		return nil, err
	}
	d.Metrics.observe(evs)
	for key, c := range moved {
		d.last[key] = c
	}
	d.lastAt = now
	return evs, nil
}
