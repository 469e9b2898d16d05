package bus_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/app/cli"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/pipeline/grantdb"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/signed"

	"encoding/base64"
	"encoding/json"

	"github.com/twmb/franz-go/pkg/kgo"
)

// asRole connects to the bus's database as a department's role.
func asRole(t *testing.T, ctx context.Context, b *bus.Bus, dept string) *pgx.Conn {
	t.Helper()
	role, pw, ok, err := b.DatabaseRole(dept)
	if err != nil || !ok {
		t.Fatalf("no database role for %s: %v", dept, err)
	}
	u, err := url.Parse(b.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, pw)
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("%s logs in: %v", role, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// refused says whether err is PostgreSQL's refusal: no privilege (42501),
// or no such relation or column for the role (42P01, 42703).
func refused(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42501" || pe.Code == "42P01" || pe.Code == "42703")
}

// TestDatabaseRoles: as hostile departments with their own database roles.
// Health, granted residents at grade 2, reads its grant's table: the
// approved fields, those above grade 2 masked exactly as its feed masks
// them, the key a pseudonym; it is refused the unmasked base table, a
// field outside its grant, the bus's ledger, writing anything (its table,
// a table of its own, a temporary table). Tax, with no grant on residents,
// is refused health's table and the base table, and reads the base table
// of an unconditional item. Health's grant revoked while it is connected,
// its next query is refused. Every grant and revocation is audited.
func TestDatabaseRoles(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	prefix := strings.TrimPrefix(testenv.UniqueName(t), "jt_")[len("testdatabaseroles_"):] // 8 hex digits
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, GroupPrefix: "t" + prefix + ".", SecretsDir: t.TempDir(), ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	// Roles are the server's: they go when the test ends.
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.Background(), pgDSN)
		if err != nil {
			return
		}
		defer admin.Close(context.Background())
		rows, _ := admin.Query(context.Background(), "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", b.DatabaseRolePrefix())
		names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, r := range names {
			_, _ = admin.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{r}.Sanitize()+"; DROP ROLE "+pgx.Identifier{r}.Sanitize())
		}
	})
	cat := sample(t)
	cc := controlClient{t, b.APIURL(), b}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const resident = "population.resident_registration"
	publishItem(t, b, cat, resident, 40, 9)
	req := control.Request{Item: resident, Purpose: "疫苗接种覆盖率统计", Fields: []string{"citizen_id", "name", "division_code", "phone"}, Grade: 2}
	app := grant(t, cc, cat, "health", req)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// The decisions come signed.
	var signedApp control.Application
	verifyDocument(t, b, "health", "/v1/applications/"+app.ID, &signedApp)
	if signedApp.State != control.Granted || len(signedApp.Decisions) != 2 {
		t.Errorf("the signed application: %+v", signedApp)
	}
	it := cat.Item(resident)
	proj := feed.Project(it, feed.Grant{ID: app.ID, Department: "health", Item: resident, Fields: req.Fields, Grade: req.Grade})
	table := pgx.Identifier{grantdb.Schema("health"), grantdb.Table(resident, app.ID)}.Sanitize()
	base := pgx.Identifier{"population", "resident_registration"}.Sanitize()

	health := asRole(t, ctx, b, "health")
	var live int
	if err := testenv.PostgresPool(t, pgDSN).QueryRow(ctx, "SELECT count(*) FROM "+base).Scan(&live); err != nil {
		t.Fatal(err)
	}
	var n int
	for ctx.Err() == nil {
		err := health.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
		if err == nil && n == live {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n != live {
		t.Fatalf("health's grant table holds %d rows, the base table %d", n, live)
	}
	// The rows as the grant sees them.
	rows, err := health.Query(ctx, "SELECT * FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	maps, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil {
		t.Fatal(err)
	}
	masked := proj.Masked()
	if len(masked) == 0 {
		t.Fatal("the test's grant masks nothing")
	}
	for _, m := range maps {
		for _, f := range masked {
			v, _ := m[f].(string)
			if f == it.Key {
				if !strings.HasPrefix(v, "k") || len(v) != 33 {
					t.Errorf("masked key %s holds %q, not a pseudonym", f, v)
				}
			} else if v != "" && !strings.Contains(v, "*") {
				t.Errorf("masked field %s holds %q", f, v)
			}
		}
		for _, f := range proj.Dropped() {
			if _, ok := m[f]; ok {
				t.Errorf("dropped field %s is a column of the grant's table", f)
			}
		}
	}
	t.Logf("health reads %d rows of %s: masked %v, dropped %v", len(maps), table, masked, proj.Dropped())

	hostile := []struct {
		who, what, sql string
	}{
		{"health", "the unmasked base table", "SELECT count(*) FROM " + base},
		{"health", "a field outside its grant", "SELECT " + pgx.Identifier{proj.Dropped()[0]}.Sanitize() + " FROM " + table},
		{"health", "the bus's ledger", "SELECT count(*) FROM jutong.sink_offsets"},
		{"health", "a write to its table", "DELETE FROM " + table},
		{"health", "an insert into its table", "INSERT INTO " + table + " DEFAULT VALUES"},
		{"health", "a table of its own", "CREATE TABLE public.mine (x int)"},
		{"health", "a table in its schema", "CREATE TABLE " + pgx.Identifier{grantdb.Schema("health"), "mine"}.Sanitize() + " (x int)"},
		{"health", "a temporary table", "CREATE TEMP TABLE mine (x int)"},
		{"tax", "another department's grant table", "SELECT count(*) FROM " + table},
		{"tax", "the base table of a conditional item", "SELECT count(*) FROM " + base},
	}
	conns := map[string]*pgx.Conn{"health": health, "tax": asRole(t, ctx, b, "tax")}
	for _, h := range hostile {
		_, err := conns[h.who].Exec(ctx, h.sql)
		if !refused(err) {
			t.Errorf("%s, %s (%s): %v, want a refusal", h.who, h.what, h.sql, err)
		}
	}
	// Unconditional items are everyone's to read.
	if err := conns["tax"].QueryRow(ctx, "SELECT count(*) FROM geography.standard_address").Scan(&n); err != nil {
		t.Errorf("tax reads an unconditional item's table: %v", err)
	}

	// Their reads are audited: who, which tables, how many rows.
	evs, err := b.AuditReads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, e := range evs {
		if e.Kind == audit.DBRead {
			for _, k := range e.Keys {
				got[e.Department+" "+k] += e.Records
			}
		}
	}
	grantTable := grantdb.Schema("health") + "." + grantdb.Table(resident, app.ID)
	if got["health "+grantTable] < int64(live) || got["tax geography.standard_address"] != 1 {
		t.Errorf("database reads audited: %v, want health reading %s (%d rows and more) and tax geography.standard_address (1)", got, grantTable, live)
	}
	t.Logf("database reads audited: %v", got)
	// Revoked while connected: the next query is refused.
	if code := cc.call(cat.Item(resident).Source, "POST", "/v1/applications/"+app.ID+"/revoke", control.Verdict{Reason: "统计已完成"}, &app); code != 200 || app.State != control.Revoked {
		t.Fatalf("revoke: %d %s", code, app.State)
	}
	var err2 error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err2 = health.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err2 != nil {
			break
		}
	}
	if !refused(err2) {
		t.Errorf("health's query after the revocation: %v, want a refusal", err2)
	}
	// The trail has both.
	kopts, _ := b.Kafka().Opts()
	kinds := map[string]int{}
	_ = kafkaconn.ReadAll(ctx, kopts, audit.Topic, func(r *kgo.Record) {
		var e audit.Event
		if json.Unmarshal(r.Value, &e) == nil && strings.Contains(e.Detail, grantdb.Table(resident, app.ID)) {
			kinds[e.Kind]++
		}
	})
	if kinds[audit.DBGranted] != 1 || kinds[audit.DBRevoked] != 1 {
		t.Errorf("audit of health's table: %v", kinds)
	}
}

// verifyDocument fetches path as dept's officer, signed, checks it as a
// department would offline (jutong audit verify-document with the bus's
// public key), decodes it into out, and checks that the document with one
// byte changed fails.
func verifyDocument(t *testing.T, b *bus.Bus, dept, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", b.APIURL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+b.Officers[dept])
	req.Header.Set("Accept", signed.MediaType)
	resp, err := b.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	jws, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != signed.MediaType {
		t.Fatalf("GET %s signed: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), jws)
	}
	dir := t.TempDir()
	doc, bad := filepath.Join(dir, "doc.jws"), filepath.Join(dir, "bad.jws")
	tampered := []byte(string(jws))
	parts := strings.Split(string(tampered), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload[len(payload)/2] ^= 1
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	_ = os.WriteFile(doc, jws, 0o600)
	_ = os.WriteFile(bad, []byte(strings.Join(parts, ".")), 0o600)
	key := base64.StdEncoding.EncodeToString(b.AuditPublicKey())
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"audit", "verify-document", "--public-key", key, doc}, &stdout, &stderr); code != 0 {
		t.Fatalf("verify-document: exit %d: %s", code, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("verify-document printed %q: %v", stdout.String(), err)
	}
	stderr.Reset()
	if code := cli.Run(context.Background(), []string{"audit", "verify-document", "--public-key", key, bad}, io.Discard, &stderr); code == 0 || !strings.Contains(stderr.String(), "does not verify") {
		t.Errorf("a document with one byte changed: exit %d: %s", code, stderr.String())
	}
}
