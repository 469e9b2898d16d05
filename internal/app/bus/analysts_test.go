package bus_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/control"
)

// asAnalyst connects to ClickHouse as a department's analysts, once the
// server has taken their user (it reloads users.d within seconds).
func asAnalyst(t *testing.T, ctx context.Context, b *bus.Bus, dept string) (driver.Conn, string) {
	t.Helper()
	user, pw, db, ok, err := b.AnalystLogin(dept)
	if err != nil || !ok {
		t.Fatalf("no analysts' login for %s: %v", dept, err)
	}
	u, _ := url.Parse(b.ClickHouseDSN())
	u.User, u.Path = url.UserPassword(user, pw), "/"+db
	opts, err := clickhouse.ParseDSN(u.String())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		conn, err := clickhouse.Open(opts)
		if err == nil {
			if err = conn.Ping(ctx); err == nil {
				t.Cleanup(func() { conn.Close() })
				return conn, db
			}
			conn.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's analysts cannot log in as %s: %v", dept, user, err)
		}
	}
}

// TestAnalysts: as hostile analysts with their own ClickHouse users.
// Health's analysts, granted residents at grade 2, read their history,
// current state and typed views in their own database: the approved fields
// only, those above grade 2 masked, the key a pseudonym. They are refused
// the bus's database (every citizen ID in clear), another department's
// analysts' database, and every write; a department with no grant has no
// login. The data authority's analysts read every item at their grade.
// Health's grant revoked, its rows leave its analysts' database.
func TestAnalysts(t *testing.T) {
	chDSN := testenv.ClickHouse(t)
	prefix := strings.TrimPrefix(testenv.UniqueName(t), "jt_testanalysts_")
	b := startBus(t, bus.Config{ClickHouseDSN: chDSN, ClickHouseUsersDir: testenv.ClickHouseUsersDir(t), GroupPrefix: "t" + prefix + ".",
		SecretsDir: t.TempDir(), AuthorityAnalysts: true, AuthorityAnalystGrade: 1, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	admin := testenv.ClickHouseConn(t, chDSN)
	var busDB string
	if err := admin.QueryRow(context.Background(), "SELECT currentDatabase()").Scan(&busDB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rows, err := admin.Query(context.Background(), "SELECT name FROM system.databases WHERE startsWith(name, ?)", busDB+"_analyst_")
		if err != nil {
			return
		}
		var names []string
		for rows.Next() {
			var n string
			_ = rows.Scan(&n)
			names = append(names, n)
		}
		rows.Close()
		for _, n := range names {
			_ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+n+"`")
		}
	})
	cat := sample(t)
	cc := controlClient{t, b.APIURL(), b}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const resident = "population.resident_registration"
	evs := publishItem(t, b, cat, resident, 30, 13)
	app := grant(t, cc, cat, "health", control.Request{Item: resident, Purpose: "疫苗接种覆盖率统计", Fields: []string{"citizen_id", "name", "division_code", "phone"}, Grade: 2})
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	health, healthDB := asAnalyst(t, ctx, b, "health")
	var n uint64
	for ctx.Err() == nil {
		if err := health.QueryRow(ctx, "SELECT count() FROM events WHERE item = ?", resident).Scan(&n); err == nil && n == uint64(len(evs)) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n != uint64(len(evs)) {
		t.Fatalf("health's analysts see %d events of %s, want %d", n, resident, len(evs))
	}
	// Nothing in clear that the grant masks: no citizen ID or phone of the
	// published records appears anywhere in health's analysts' history.
	rows, err := health.Query(ctx, "SELECT key, data FROM events WHERE item = ?", resident)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for rows.Next() {
		var key, data string
		if err := rows.Scan(&key, &data); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, "k") || len(key) != 33 {
			t.Errorf("a key in health's analysts' history: %q, not a pseudonym", key)
		}
		all.WriteString(key + data + "\n")
	}
	rows.Close()
	for _, e := range evs {
		for _, f := range []string{"citizen_id", "phone", "household_address"} {
			if v, _ := e.Data[f].(string); v != "" && strings.Contains(all.String(), v) {
				t.Errorf("health's analysts read %s %q in clear", f, v)
			}
		}
	}
	// The typed view of the item, as projected.
	var masked string
	if err := health.QueryRow(ctx, "SELECT phone FROM population_resident_registration WHERE phone != '' LIMIT 1").Scan(&masked); err != nil || !strings.Contains(masked, "*") {
		t.Errorf("the typed view's phone: %q, %v", masked, err)
	}
	hostile := []struct{ what, sql string }{
		{"the bus's database", "SELECT count() FROM `" + busDB + "`.events"},
		{"the bus's current state", "SELECT count() FROM `" + busDB + "`.current_state"},
		{"a write to its history", "INSERT INTO events (item) VALUES ('x')"},
		{"a table of its own", "CREATE TABLE mine (x UInt8) ENGINE = Memory"},
		{"dropping its history", "DROP TABLE events"},
		{"leaving readonly", "SET readonly = 0"},
	}
	for _, h := range hostile {
		if err := health.Exec(ctx, h.sql); err == nil {
			t.Errorf("health's analysts, %s (%s): accepted", h.what, h.sql)
		}
	}
	// The data authority's analysts: every item at grade 1.
	authority, authDB := asAnalyst(t, ctx, b, cat.Authority)
	if err := health.Exec(ctx, "SELECT count() FROM `"+authDB+"`.events"); err == nil {
		t.Error("health's analysts read the data authority's analysts' database")
	}
	for ctx.Err() == nil {
		if err := authority.QueryRow(ctx, "SELECT count() FROM events WHERE item = ?", resident).Scan(&n); err == nil && n == uint64(len(evs)) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := authority.QueryRow(ctx, "SELECT name FROM population_resident_registration LIMIT 1").Scan(&masked); err != nil || !strings.Contains(masked, "*") {
		t.Errorf("the authority's analysts at grade 1 read a name (grade 2): %q, %v", masked, err)
	}
	if err := authority.Exec(ctx, "SELECT count() FROM `"+healthDB+"`.events"); err == nil {
		t.Error("the authority's analysts read health's analysts' database")
	}
	// Their queries are audited (query_log, a second once it is over).
	time.Sleep(3 * time.Second)
	evs2, err := b.AuditReads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reads := map[string]int{}
	for _, e := range evs2 {
		if e.Kind == audit.DBRead && strings.HasPrefix(e.Detail, "clickhouse: ") {
			reads[e.Department]++
		}
	}
	if reads["health"] < 3 || reads[cat.Authority] < 1 {
		t.Errorf("analysts' queries audited: %v", reads)
	}
	t.Logf("analysts' queries audited: %v", reads)
	// A department with no grant has no login.
	if user, pw, _, _, _ := b.AnalystLogin("tax"); user != "" {
		u, _ := url.Parse(b.ClickHouseDSN())
		u.User = url.UserPassword(user, pw)
		opts, _ := clickhouse.ParseDSN(u.String())
		if conn, err := clickhouse.Open(opts); err == nil {
			if conn.Ping(ctx) == nil {
				t.Error("tax, with no grant, logs in as analysts")
			}
			conn.Close()
		}
	}
	// Revoked: the item leaves health's analysts' database.
	if code := cc.call(cat.Item(resident).Source, "POST", "/v1/applications/"+app.ID+"/revoke", control.Verdict{Reason: "统计已完成"}, &app); code != 200 || app.State != control.Revoked {
		t.Fatalf("revoke: %d %s", code, app.State)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err := admin.QueryRow(ctx, "SELECT count() FROM `"+healthDB+"`.events WHERE item = ?", resident).Scan(&n); err == nil && n == 0 {
			break
		}
	}
	if n != 0 {
		t.Errorf("after the revocation health's analysts' database holds %d events of %s", n, resident)
	}
}
