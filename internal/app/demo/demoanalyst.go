package demo

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/server/audit"
)

// demoAnalyst plays health's analysts after health's grant on residents:
// they log in to ClickHouse with their own user, query their database
// (the residents masked as the grant masks them), and their query is in
// the audit trail.
func demoAnalyst(ctx context.Context, out io.Writer, st *stack.Stack) error {
	const item, view = "population.resident_registration", "population_resident_registration"
	if st.Catalog.Item(item) == nil {
		return nil
	}
	user, pw, db, ok, err := st.Bus.AnalystLogin("health")
	if err != nil || !ok {
		return err
	}
	u, err := url.Parse(st.CHDSN)
	if err != nil {
		return err
	}
	u.User, u.Path = url.UserPassword(user, pw), "/"+db
	opts, err := clickhouse.ParseDSN(u.String())
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	query := "SELECT citizen_id, name, division_code FROM " + view + " ORDER BY name LIMIT 3"
	var rows [][3]string
	for wctx.Err() == nil {
		conn, err := clickhouse.Open(opts) // the server takes a new user within seconds
		if err == nil {
			rows, err = analystRows(wctx, conn, query)
			conn.Close()
			if err == nil && len(rows) > 0 {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(rows) == 0 {
		return fmt.Errorf("health's analysts read nothing from %s: %w", db, wctx.Err())
	}
	fmt.Fprintf(out, "\nAn analyst (health's, ClickHouse user %s, database %s: its grant's items only, masked as the grant masks them)\n", user, db)
	fmt.Fprintf(out, "  %s\n", query)
	for _, r := range rows {
		fmt.Fprintf(out, "    %s  %s  %s\n", r[0], r[1], r[2])
	}
	time.Sleep(2500 * time.Millisecond) // the query's second of the query log is over
	evs, err := st.Bus.AuditReads(ctx)
	if err != nil {
		return err
	}
	for _, e := range evs {
		if e.Kind == audit.DBRead && e.Department == "health" && strings.Contains(e.Detail, view) {
			fmt.Fprintf(out, "  its audit line: %s %s %s read %d rows of %s: %s\n", e.Time.Format(time.RFC3339), e.Kind, e.Department, e.Records, strings.Join(e.Keys, ","), e.Detail)
			break
		}
	}
	fmt.Fprintf(out, "  log in as a department: jutong db login --department health [--clickhouse] (with %s sourced)\n", st.EnvFile())
	return nil
}

func analystRows(ctx context.Context, conn clickhouse.Conn, query string) ([][3]string, error) {
	rs, err := conn.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out [][3]string
	for rs.Next() {
		var id string
		var name, div *string
		if err := rs.Scan(&id, &name, &div); err != nil {
			return nil, err
		}
		out = append(out, [3]string{id, deref(name), deref(div)})
	}
	return out, rs.Err()
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}
