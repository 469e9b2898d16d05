package bus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/app/cli"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/audit"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReplay damages both sinks (PostgreSQL rows deleted and altered,
// ClickHouse history rows deleted and its current state emptied) and repairs
// them with `jutong sink replay` while the pipelines keep running: afterwards
// each holds exactly what it held before, nothing duplicated.
func TestReplay(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	secrets := t.TempDir()
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN, SecretsDir: secrets})
	auditKey := filepath.Join(secrets, audit.KeyFile)
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	pub := publisher(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	gen := synth.New(sample(t).Item(item), 11, time.Now())
	evs := make([]*schemas.Event, 4000)
	for i := range evs {
		evs[i] = gen.Next()
	}
	if _, err := pub.Publish(ctx, item, evs...); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	pgState := func() string {
		var s string
		if err := testenv.PostgresPool(t, b.PostgresDSN()).QueryRow(ctx, `SELECT count(*) || ':' || coalesce(md5(string_agg(uscc || '/' || _offset || '/' || name || '/' || registered_capital, ',' ORDER BY uscc)), '')
			FROM legal_person.enterprise_registration`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	chState := func() string {
		var events, positions, state uint64
		var sum uint64
		q := fmt.Sprintf(`SELECT (SELECT count() FROM events WHERE item = '%[1]s'), (SELECT uniqExact(kafka_partition, kafka_offset) FROM events WHERE item = '%[1]s'),
			(SELECT count() FROM current WHERE item = '%[1]s'), (SELECT sum(cityHash64(key, data) %% 1000000) FROM current WHERE item = '%[1]s')`, item)
		if err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).QueryRow(ctx, q).Scan(&events, &positions, &state, &sum); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d events at %d positions, %d live keys, hash %d", events, positions, state, sum)
	}
	wantPG, wantCH := pgState(), chState()

	// Damage: rows lost and rows altered in PostgreSQL; history rows lost and
	// the current state emptied in ClickHouse.
	if _, err := testenv.PostgresPool(t, b.PostgresDSN()).Exec(ctx, `DELETE FROM legal_person.enterprise_registration WHERE uscc < '91500150'`); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.PostgresPool(t, b.PostgresDSN()).Exec(ctx, `UPDATE legal_person.enterprise_registration SET name = '损坏的数据' WHERE uscc > '9150023'`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`ALTER TABLE events DELETE WHERE item = '` + item + `' AND kafka_offset % 3 = 0`,
		`TRUNCATE TABLE current_state`,
	} {
		if err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for deadline := time.Now().Add(time.Minute); chState() == wantCH || strings.HasPrefix(chState(), strings.SplitN(wantCH, " ", 2)[0]+" "); {
		if time.Now().After(deadline) {
			t.Fatal("the ClickHouse mutation did not apply")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pgState() == wantPG {
		t.Fatal("the PostgreSQL damage did not change the state")
	}

	k := b.Kafka()
	// Not audited, not run.
	var out0, errOut0 bytes.Buffer
	if code := cli.Run(ctx, []string{"sink", "replay", "--sink", "postgres", "--item", item, "--brokers", strings.Join(k.Brokers, ","), "--kafka-user", k.User,
		"--kafka-password", k.Password, "--registry", b.RegistryURL(), "--postgres-dsn", pgDSN}, &out0, &errOut0); code == 0 || !strings.Contains(errOut0.String(), "--audit-key") {
		t.Errorf("a replay without the audit key: exit %d: %s", code, errOut0.String())
	}
	for _, sink := range []string{"postgres", "clickhouse"} {
		var out, errOut bytes.Buffer
		args := []string{"sink", "replay", "--sink", sink, "--item", item, "--from-offset", "0",
			"--brokers", strings.Join(k.Brokers, ","), "--kafka-user", k.User, "--kafka-password", k.Password,
			"--registry", b.RegistryURL(), "--postgres-dsn", pgDSN, "--clickhouse-dsn", chDSN, "--audit-key", auditKey}
		if code := cli.Run(ctx, args, &out, &errOut); code != 0 {
			t.Fatalf("jutong sink replay --sink %s: exit %d: %s", sink, code, errOut.String())
		}
		if !strings.Contains(out.String(), "replayed 4000 records of "+item) {
			t.Errorf("replay --sink %s printed %q", sink, out.String())
		}
		t.Logf("%s%s", errOut.String(), out.String())
	}
	if got := pgState(); got != wantPG {
		t.Errorf("PostgreSQL after the replay: %s, want %s", got, wantPG)
	}
	if got := chState(); got != wantCH {
		t.Errorf("ClickHouse after the replay: %s, want %s", got, wantCH)
	}
	// A second replay changes nothing.
	var out, errOut bytes.Buffer
	if code := cli.Run(ctx, []string{"sink", "replay", "--sink", "clickhouse", "--item", item, "--from-time", time.Now().Add(-time.Hour).Format(time.RFC3339),
		"--brokers", strings.Join(k.Brokers, ","), "--kafka-user", k.User, "--kafka-password", k.Password,
		"--registry", b.RegistryURL(), "--clickhouse-dsn", chDSN, "--audit-key", auditKey}, &out, &errOut); code != 0 {
		t.Fatalf("second replay: %s", errOut.String())
	}
	if got := chState(); got != wantCH {
		t.Errorf("ClickHouse after a second replay: %s, want %s", got, wantCH)
	}
	// The three replays are in the audit trail, which verifies.
	kopts, err := k.Opts()
	if err != nil {
		t.Fatal(err)
	}
	var replays []audit.Event
	if err := kafkaconn.ReadAll(ctx, kopts, audit.Topic, func(r *kgo.Record) {
		var e audit.Event
		if json.Unmarshal(r.Value, &e) == nil && (e.Kind == audit.Replay || e.Kind == audit.Replayed) {
			replays = append(replays, e)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(replays) != 6 {
		t.Fatalf("%d replay audit records, want 6 (3 replays, begun and ended): %+v", len(replays), replays)
	}
	for i, e := range replays {
		if e.Actor != k.User || e.Item != item || !strings.Contains(e.Detail, "into sink ") || !strings.Contains(e.Detail, "on host ") {
			t.Errorf("replay audit %d: %+v", i, e)
		}
		if e.Kind == audit.Replayed && (e.Records != 4000 || !strings.HasPrefix(e.Detail, "completed")) {
			t.Errorf("replay audit %d: %+v", i, e)
		}
	}
	rep, err := audit.VerifyKafka(ctx, kopts, audit.Topic, b.AuditPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("the audit trail: %s", rep)
	}
	t.Logf("audit verify: %s", rep)
}
