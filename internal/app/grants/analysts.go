package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/analystdb"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dbaccess"
)

// ClickHouseAnalysts keeps a database and a user per department's
// analysts on the bus's ClickHouse server (analystdb, dbaccess): the items
// of its active grants, each as the grant of highest grade sees it; the
// data authority's analysts see every item at AuthorityGrade (or their own
// grant's, when higher).
type ClickHouseAnalysts struct {
	Catalog *catalog.Catalog
	DSN     string // the bus's ClickHouse database
	// UsersDir is the users.d of a server without SQL access management
	// (18.16) the bus may write to (a local one: jutong dev); "" uses
	// CREATE USER when the server has it.
	UsersDir   string
	Passwords  string // <secrets-dir>/db-credentials.json
	UserPrefix string
	KeySecret  []byte
	// Authority gives the data authority's analysts every item, at
	// AuthorityGrade (a masked copy of the whole analytics store: its
	// cost is in docs/benchmarks.md).
	Authority      bool
	AuthorityGrade int
	Pipeline       pipeline.Config
	Log            *slog.Logger

	mu    sync.Mutex
	conn  driver.Conn
	busDB string
	runs  map[string]*analystRun // by department
}

type analystRun struct {
	*sinkRun
	set map[string]string // item -> grant id
}

// User is a department's analysts' ClickHouse login (made when missing).
func (a *ClickHouseAnalysts) User(dept string) (user, password, database string, err error) {
	user = dbaccess.AnalystUser(a.UserPrefix, dept)
	password, err = access.LoadOrCreateSecret(a.Passwords, user)
	return user, password, analystdb.Database(a.database(), dept), err
}

func (a *ClickHouseAnalysts) database() string {
	if a.busDB == "" {
		if o, err := clickhouse.ParseDSN(a.DSN); err == nil {
			a.busDB = o.Auth.Database
		}
	}
	return a.busDB
}

// want is, by department, the grant each item is seen through.
func (a *ClickHouseAnalysts) want(grants []control.Grant) map[string]map[string]feed.Grant {
	out := map[string]map[string]feed.Grant{}
	add := func(g feed.Grant) {
		if out[g.Department] == nil {
			out[g.Department] = map[string]feed.Grant{}
		}
		if cur, ok := out[g.Department][g.Item]; !ok || g.Grade > cur.Grade || (g.Grade == cur.Grade && g.ID < cur.ID) {
			out[g.Department][g.Item] = g
		}
	}
	if auth := a.Catalog.Authority; auth != "" && a.Authority {
		for _, it := range a.Catalog.Items {
			var fields []string
			for _, f := range it.Fields {
				fields = append(fields, f.Name)
			}
			add(feed.Grant{ID: "analyst." + auth, Department: auth, Item: it.Code, Fields: fields, Grade: a.AuthorityGrade})
		}
	}
	for _, g := range grants {
		if a.Catalog.Item(g.Item) != nil {
			add(FeedGrant(g))
		}
	}
	return out
}

// Sync implements Databases.
func (a *ClickHouseAnalysts) Sync(ctx context.Context, grants []control.Grant) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	if a.conn == nil {
		o, err := clickhouse.ParseDSN(a.DSN)
		if err != nil {
			return err
		}
		if a.conn, err = clickhouse.Open(o); err != nil {
			return err
		}
		a.runs = map[string]*analystRun{}
	}
	want := a.want(grants)
	var users []string
	for dept := range want {
		users = append(users, dbaccess.AnalystUser(a.UserPrefix, dept))
	}
	passwords, err := access.LoadOrCreateSecrets(a.Passwords, users) // one read of the file
	if err != nil {
		return err
	}
	var errs []error
	for dept, run := range a.runs {
		if _, ok := want[dept]; !ok {
			run.stop()
			delete(a.runs, dept)
			errs = append(errs, a.forget(ctx, dept, slices.Collect(maps.Keys(run.set))))
		}
	}
	var analysts []dbaccess.Analyst
	for dept, items := range want {
		set := map[string]string{}
		for code, g := range items {
			set[code] = g.ID
		}
		user := dbaccess.AnalystUser(a.UserPrefix, dept)
		analysts = append(analysts, dbaccess.Analyst{User: user, Password: passwords[user], Database: analystdb.Database(a.database(), dept)})
		run := a.runs[dept]
		if run != nil && maps.Equal(run.set, set) {
			continue
		}
		var gone []string
		if run != nil {
			run.stop()
			for code, id := range run.set {
				if set[code] != id {
					gone = append(gone, code)
				}
			}
		}
		if err := a.forget(ctx, dept, gone); err != nil {
			errs = append(errs, err)
			delete(a.runs, dept)
			continue
		}
		next, err := a.start(ctx, dept, items)
		if err != nil {
			errs = append(errs, fmt.Errorf("analysts of %s: %w", dept, err))
			delete(a.runs, dept)
			continue
		}
		next.set = set
		a.runs[dept] = next
	}
	switch {
	case a.UsersDir != "":
		errs = append(errs, dbaccess.WriteUsersFile(a.UsersDir, analysts))
	case dbaccess.HasAccessManagement(ctx, a.conn):
		errs = append(errs, dbaccess.ReconcileClickHouse(ctx, a.conn, a.UserPrefix, analysts))
	default:
		errs = append(errs, errors.New("analysts: this ClickHouse has no SQL access management (CREATE USER, 20.4 and later) and the bus writes no users.d of it: the analysts' databases are kept, their users are not (docs/security.md)"))
	}
	return errors.Join(errs...)
}

// forget deletes the rows of items a department's analysts no longer see
// as they did (their grant ended, or another grant's projection replaces
// it), and waits until they are gone.
func (a *ClickHouseAnalysts) forget(ctx context.Context, dept string, items []string) error {
	if len(items) == 0 {
		return nil
	}
	db := "`" + analystdb.Database(a.database(), dept) + "`"
	for _, table := range []string{"events", "current_state", "dead_letters"} {
		for _, item := range items {
			if err := a.conn.Exec(ctx, "ALTER TABLE "+db+"."+table+" DELETE WHERE item = ?", item); err != nil {
				return fmt.Errorf("analysts of %s: %w", dept, err)
			}
		}
	}
	for ctx.Err() == nil {
		var pending uint64
		if err := a.conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0", analystdb.Database(a.database(), dept)).Scan(&pending); err != nil {
			return err
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-a.after():
		}
	}
	return ctx.Err()
}

func (a *ClickHouseAnalysts) start(ctx context.Context, dept string, items map[string]feed.Grant) (*analystRun, error) {
	db := analystdb.Database(a.database(), dept)
	if err := a.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+db+"`"); err != nil {
		return nil, err
	}
	o, err := clickhouse.ParseDSN(a.DSN)
	if err != nil {
		return nil, err
	}
	dsn := withDatabase(a.DSN, o.Auth.Database, db)
	var gs []feed.Grant
	for _, g := range items {
		if len(a.KeySecret) > 0 {
			g.KeySecret = feed.GrantKeySecret(a.KeySecret, g.ID)
		}
		gs = append(gs, g)
	}
	s, err := analystdb.New(ctx, analystdb.Config{Name: "analyst." + dept, DSN: dsn, Grants: gs, Items: a.Catalog, Log: a.Log})
	if err != nil {
		return nil, err
	}
	run, err := runSink(ctx, a.Pipeline, s, a.Log, "analysts' database")
	if err != nil {
		return nil, err
	}
	a.Log.Info("analysts' database started", "department", dept, "database", db, "items", len(items))
	return &analystRun{sinkRun: run}, nil
}

// Close stops the analysts' sinks.
func (a *ClickHouseAnalysts) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, run := range a.runs {
		run.stop()
	}
	a.runs = nil
	if a.conn != nil {
		a.conn.Close()
		a.conn = nil
	}
}

func (a *ClickHouseAnalysts) after() <-chan time.Time { return time.After(200 * time.Millisecond) }

// withDatabase is dsn naming database db instead.
func withDatabase(dsn, _ string, db string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	u.Path = "/" + db
	return u.String()
}
