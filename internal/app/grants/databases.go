package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/pipeline/grantdb"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dbaccess"
)

// Databases are the bus's databases' principals: Sync makes them match
// the active grants.
type Databases interface {
	Sync(ctx context.Context, grants []control.Grant) error
}

// PostgresRoles runs a grantdb sink per active grant of an item the base
// databases hold, and keeps the departments' roles reading exactly their
// grants' tables and the unconditional items' base tables (dbaccess).
type PostgresRoles struct {
	Catalog *catalog.Catalog
	DSN     string // the grant tables' sinks connect with it
	// DB reconciles the roles: the bus's pool of DSN.
	DB *pgxpool.Pool
	// RolePrefix begins the roles' names (dbaccess.Role).
	RolePrefix string
	// SetPasswords: this instance owns the roles' passwords
	// (dbaccess.Postgres.SetPasswords).
	SetPasswords bool
	// Passwords is where the roles' passwords are kept (JSON, 0600; made
	// when missing): <secrets-dir>/db-credentials.json.
	Passwords string
	// KeySecret is the bus's secret the grants' pseudonyms derive from.
	KeySecret []byte
	Pipeline  pipeline.Config
	Audit     AuditWriter
	Log       *slog.Logger

	mu      sync.Mutex
	ensured bool                 // every department's role made by this process
	sinks   map[string]*grantRun // by grant id
}

type grantRun struct {
	*sinkRun
	table dbaccess.Table
}

// Password is a department role's password, made when missing.
func (p *PostgresRoles) Password(dept string) (string, error) {
	return access.LoadOrCreateSecret(p.Passwords, dbaccess.Role(p.RolePrefix, dept))
}

// Sync implements Databases.
func (p *PostgresRoles) Sync(ctx context.Context, grants []control.Grant) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Log == nil {
		p.Log = slog.New(slog.DiscardHandler)
	}
	if p.sinks == nil {
		p.sinks = map[string]*grantRun{}
	}
	want := map[string]control.Grant{}
	for _, g := range grants {
		if it := p.Catalog.Item(g.Item); it != nil && (pgsink.Config{}).Holds(it) {
			want[g.ID] = g
		}
	}
	for id, run := range p.sinks {
		if _, ok := want[id]; !ok {
			run.stop()
			delete(p.sinks, id)
		}
	}
	var errs []error
	for id, g := range want {
		if _, ok := p.sinks[id]; ok {
			continue
		}
		run, err := p.start(ctx, g)
		if err != nil {
			errs = append(errs, fmt.Errorf("grant %s: %w", id, err))
			continue
		}
		p.sinks[id] = run
	}
	reads := map[string][]dbaccess.Table{}
	for id, run := range p.sinks {
		d := want[id].Department
		reads[d] = append(reads[d], run.table)
	}
	// The roles are made once a process; later runs reconcile the reads.
	var passwords map[string]string
	if !p.ensured {
		var names []string
		for _, d := range p.Catalog.Departments {
			names = append(names, dbaccess.Role(p.RolePrefix, d.Code))
		}
		var err error
		if passwords, err = access.LoadOrCreateSecrets(p.Passwords, names); err != nil {
			return err
		}
	}
	var unconditional []dbaccess.Table
	for _, it := range p.Catalog.Items {
		if it.Share == catalog.ShareUnconditional && (pgsink.Config{}).Holds(it) {
			schema, table := it.Namespace()
			unconditional = append(unconditional, dbaccess.Table{Schema: schema, Name: table})
		}
	}
	var principals []dbaccess.Principal
	for _, d := range p.Catalog.Departments {
		principals = append(principals, dbaccess.Principal{Department: d.Code, Password: passwords[dbaccess.Role(p.RolePrefix, d.Code)],
			Reads: append(slices.Clone(reads[d.Code]), unconditional...), Ensured: p.ensured})
	}
	granted, revoked, err := dbaccess.Postgres{Pool: p.DB, SetPasswords: p.SetPasswords}.Reconcile(ctx, p.DB.Config().ConnConfig.Database, p.RolePrefix, principals)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	p.ensured = true
	if len(granted)+len(revoked) > 0 {
		p.Log.Info("database roles reconciled with the grants", "granted", len(granted), "revoked", len(revoked))
		var evs []audit.Event
		for _, g := range granted {
			evs = append(evs, audit.Event{Kind: audit.DBGranted, Actor: "jutong", Detail: "postgres " + g})
		}
		for _, r := range revoked {
			evs = append(evs, audit.Event{Kind: audit.DBRevoked, Actor: "jutong", Detail: "postgres " + r})
		}
		if p.Audit != nil {
			if err := p.Audit.Write(ctx, evs...); err != nil {
				p.Log.Error("audit write failed", "err", err)
			}
		}
	}
	return errors.Join(errs...)
}

func (p *PostgresRoles) start(ctx context.Context, g control.Grant) (*grantRun, error) {
	it := p.Catalog.Item(g.Item)
	fg := FeedGrant(g)
	if len(p.KeySecret) > 0 {
		fg.KeySecret = feed.GrantKeySecret(p.KeySecret, g.ID)
	}
	s, err := grantdb.New(ctx, grantdb.Config{DSN: p.DSN, Item: it, Grant: fg, Log: p.Log})
	if err != nil {
		return nil, err
	}
	schema, table := s.Table()
	run, err := runSink(ctx, p.Pipeline, s, p.Log, "grant table")
	if err != nil {
		return nil, err
	}
	p.Log.Info("grant table started", "grant", g.ID, "table", schema+"."+table)
	return &grantRun{sinkRun: run, table: dbaccess.Table{Schema: schema, Name: table}}, nil
}

// Close stops the grants' sinks.
func (p *PostgresRoles) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, run := range p.sinks {
		run.stop()
	}
	p.sinks = nil
}
