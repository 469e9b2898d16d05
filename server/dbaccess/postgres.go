// Package dbaccess makes the bus's databases' principals from the grants,
// as package access makes the Kafka ACLs: a PostgreSQL login role per
// department (<prefix><department>, its password in the secrets directory)
// that may read the tables of its active grants in its own schema
// (package pipeline/grantdb writes them, projected and masked) and the
// base tables of the unconditional items, and nothing else; nobody but the
// bus writes. Reconcile is idempotent and revokes what no grant justifies
// any more: a role still connected is refused at its next query.
package dbaccess

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/pipeline/grantdb"
)

// Role is a department's PostgreSQL role: prefix (roles are the whole
// server's, so each deployment on a server takes its own; "jutong_") and
// the department's code.
func Role(prefix, dept string) string { return prefix + dept }

// Table is one table a role may read.
type Table struct{ Schema, Name string }

func (t Table) ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Principal is one department's role: its password and what it may read.
type Principal struct {
	Department string
	Password   string
	Reads      []Table
	// Ensured says the role, its login and its schema were made by an
	// earlier Reconcile of this process: only its reads are reconciled.
	Ensured bool
}

// Postgres reconciles the roles of one database.
type Postgres struct {
	Pool *pgxpool.Pool
	// SetPasswords sets an existing role's password to its principal's
	// (a new role always gets it): true for the one instance that owns the
	// secrets (jutong dev, serve --create-users), so that instances with
	// other secrets do not overwrite each other's.
	SetPasswords bool
}

// Reconcile makes each principal's role exist (LOGIN, its password, no
// other attribute), able to connect and to read exactly its Reads; tables
// of the grant schemas no principal reads any more are dropped. It returns
// what it granted and revoked, as "role table".
func (p Postgres) Reconcile(ctx context.Context, database, prefix string, principals []Principal) (granted, revoked []string, err error) {
	tx, err := p.Pool.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// One reconciler at a time (instances of the bus share the database).
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7405564)"); err != nil {
		return nil, nil, err
	}
	// The database's defaults let any role make temporary tables: not
	// theirs to write.
	db := pgx.Identifier{database}.Sanitize()
	if _, err := tx.Exec(ctx, "REVOKE TEMPORARY ON DATABASE "+db+" FROM PUBLIC"); err != nil {
		return nil, nil, fmt.Errorf("dbaccess: %w", err)
	}
	want := map[string]map[string]Table{} // role -> ident -> table
	for _, pr := range principals {
		role := Role(prefix, pr.Department)
		r := pgx.Identifier{role}.Sanitize()
		want[role] = map[string]Table{}
		for _, t := range pr.Reads {
			// A table its sink has not made yet is granted at the next run.
			var ok bool
			if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.ident()).Scan(&ok); err != nil {
				return nil, nil, err
			}
			if ok {
				want[role][t.ident()] = t
			}
		}
		if pr.Ensured {
			continue
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
			return nil, nil, err
		}
		verb, password := "ALTER", ""
		if !exists {
			verb = "CREATE"
		}
		if !exists || p.SetPasswords {
			// A literal: DDL takes no parameters.
			password = " PASSWORD " + quote(pr.Password)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("%s ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 20%s",
			verb, r, password)); err != nil {
			return nil, nil, fmt.Errorf("dbaccess: role %s: %w", role, err)
		}
		if _, err := tx.Exec(ctx, "GRANT CONNECT ON DATABASE "+db+" TO "+r); err != nil {
			return nil, nil, fmt.Errorf("dbaccess: %w", err)
		}
		schema := pgx.Identifier{grantdb.Schema(pr.Department)}.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema+"; GRANT USAGE ON SCHEMA "+schema+" TO "+r); err != nil {
			return nil, nil, fmt.Errorf("dbaccess: %w", err)
		}
	}
	// What the roles hold now.
	rows, err := tx.Query(ctx, `SELECT r.rolname, n.nspname, c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
		WHERE starts_with(r.rolname, $1) AND a.privilege_type = 'SELECT'`, prefix)
	if err != nil {
		return nil, nil, err
	}
	have := map[string]map[string]Table{}
	for rows.Next() {
		var role string
		var t Table
		if err := rows.Scan(&role, &t.Schema, &t.Name); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if have[role] == nil {
			have[role] = map[string]Table{}
		}
		have[role][t.ident()] = t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for role, ts := range have {
		for id := range ts {
			if _, ok := want[role][id]; ok {
				continue
			}
			if _, err := tx.Exec(ctx, "REVOKE ALL ON TABLE "+id+" FROM "+pgx.Identifier{role}.Sanitize()); err != nil {
				return nil, nil, fmt.Errorf("dbaccess: %w", err)
			}
			revoked = append(revoked, role+" "+id)
		}
	}
	for role, ts := range want {
		for id, t := range ts {
			if _, ok := have[role][id]; ok {
				continue
			}
			// Usage of the table's schema names its tables; only those
			// granted can be read.
			r := pgx.Identifier{role}.Sanitize()
			if _, err := tx.Exec(ctx, "GRANT USAGE ON SCHEMA "+pgx.Identifier{t.Schema}.Sanitize()+" TO "+r+"; GRANT SELECT ON TABLE "+id+" TO "+r); err != nil {
				return nil, nil, fmt.Errorf("dbaccess: %s may not read %s: %w", role, id, err)
			}
			granted = append(granted, role+" "+id)
		}
	}
	// The tables of ended grants go: their data was the grant's.
	rows, err = tx.Query(ctx, `SELECT table_schema, table_name FROM information_schema.tables
		WHERE table_schema LIKE 'grant\_%' AND table_type = 'BASE TABLE'`)
	if err != nil {
		return nil, nil, err
	}
	var drop []string
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.Schema, &t.Name); err != nil {
			rows.Close()
			return nil, nil, err
		}
		wanted := false
		for _, ts := range want {
			if _, ok := ts[t.ident()]; ok {
				wanted = true
			}
		}
		if !wanted {
			drop = append(drop, t.ident())
		}
	}
	rows.Close()
	slices.Sort(drop)
	for _, id := range drop {
		if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+id+" CASCADE"); err != nil {
			return nil, nil, fmt.Errorf("dbaccess: %w", err)
		}
		// Its sink's ledger names the table (grantdb): it goes with it.
		if _, err := tx.Exec(ctx, "DELETE FROM jutong.sink_offsets WHERE topic = $1", strings.ReplaceAll(id, `"`, "")); err != nil {
			return nil, nil, fmt.Errorf("dbaccess: %w", err)
		}
	}
	slices.Sort(granted)
	slices.Sort(revoked)
	return granted, revoked, tx.Commit(ctx)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
