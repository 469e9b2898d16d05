package sqladapter_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/producers/sqladapter"
	"github.com/jutong/jutong/schemas"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const item = "legal_person.enterprise_registration"

type dialect struct {
	name   sqladapter.Dialect
	driver string
	dsn    func(testing.TB) string
	types  map[catalog.FieldType]string
	ts     string // the updated-at column's type
	boolT  string
	ph     func(int) string
}

var dialects = []dialect{
	{sqladapter.Postgres, "pgx", testenv.Postgres,
		map[catalog.FieldType]string{catalog.TypeString: "text", catalog.TypeEnum: "text", catalog.TypeLong: "bigint",
			catalog.TypeDecimal: "numeric(18,4)", catalog.TypeDate: "date", catalog.TypeTimestamp: "timestamptz"},
		"timestamptz", "boolean", func(i int) string { return fmt.Sprintf("$%d", i) }},
	{sqladapter.MySQL, "mysql", testenv.MySQL,
		map[catalog.FieldType]string{catalog.TypeString: "varchar(500)", catalog.TypeEnum: "varchar(64)", catalog.TypeLong: "bigint",
			catalog.TypeDecimal: "decimal(18,4)", catalog.TypeDate: "date", catalog.TypeTimestamp: "datetime(3)"},
		"datetime(6)", "boolean", func(int) string { return "?" }},
}

// sqlValue renders a generated value for an INSERT parameter.
func sqlValue(v any) any {
	switch x := v.(type) {
	case *big.Rat:
		return x.FloatString(4)
	case time.Time:
		return x.UTC()
	}
	return v
}

func TestSQLAdapterExactlyOnceAcrossRestarts(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d.name), func(t *testing.T) { testAdapter(t, d) })
	}
}

func testAdapter(t *testing.T, d dialect) {
	db, err := sql.Open(d.driver, d.dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cat, _ := catalog.Sample()
	it := cat.Item(item)
	var cols, names, phs []string
	for i, f := range it.Fields {
		null := ""
		if f.Required {
			null = " NOT NULL"
		}
		cols = append(cols, f.Name+" "+d.types[f.Type]+null)
		names = append(names, f.Name)
		phs = append(phs, d.ph(i+1))
	}
	ddl := fmt.Sprintf("CREATE TABLE enterprise (%s, updated_at %s NOT NULL, deleted %s NOT NULL DEFAULT false, corrects %s NULL, PRIMARY KEY (uscc))",
		strings.Join(cols, ", "), d.ts, d.boolT, d.types[catalog.TypeEnum])
	if _, err := db.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	n := len(it.Fields)
	insert := fmt.Sprintf("INSERT INTO enterprise (%s, updated_at) VALUES (%s, %s)", strings.Join(names, ", "), strings.Join(phs, ", "), d.ph(n+1))
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	gen := synth.New(it, 21, time.Now())
	gen.UpdateEvery, gen.DeleteEvery = 0, 0
	var keys []string
	for i := 0; i < 250; i++ {
		e := gen.Next()
		args := make([]any, 0, n+1)
		for _, f := range it.Fields {
			args = append(args, sqlValue(e.Data[f.Name]))
		}
		if _, err := db.Exec(insert, append(args, base)...); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, e.Key)
	}

	b, err := bus.Start(context.Background(), bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	principal := cat.Department(it.Source).Principal
	newAdapter := func() (*sqladapter.Adapter, func()) {
		pub, err := producers.New(ctx, cat, it.Source, connect.Config{Brokers: b.Kafka().Brokers, User: principal, Password: b.Credentials[principal], Registry: b.RegistryURL()}, producers.Transactional(principal+".sql.test"), producers.Adapter("sql"))
		if err != nil {
			t.Fatal(err)
		}
		a, err := sqladapter.New(ctx, sqladapter.Config{Item: it, DB: db, Dialect: d.name, Table: "enterprise",
			UpdatedColumn: "updated_at", DeletedColumn: "deleted", CorrectsColumn: "corrects", KeyDiffEvery: time.Nanosecond, Batch: 100, Publisher: pub,
			Kafka: b.KafkaOpts()})
		if err != nil {
			t.Fatal(err)
		}
		return a, pub.Close
	}
	step := func(a *sqladapter.Adapter) int {
		n, err := a.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Two snapshot batches, then the adapter is stopped and started again.
	a, stop := newAdapter()
	if got := step(a) + step(a); got != 200 {
		t.Fatalf("first two batches read %d rows", got)
	}
	stop()
	a, stop = newAdapter()
	for step(a) > 0 {
	}
	if cp := a.Checkpoint(); !cp.SnapshotDone || cp.Rows != 250 {
		t.Fatalf("after the snapshot: %+v", cp)
	}
	// Changes: 30 updates and 10 soft deletes; the first update corrects
	// the record of a dispute (the table's corrects column names it).
	for i := 0; i < 40; i++ {
		q := fmt.Sprintf("UPDATE enterprise SET updated_at = %s, address = %s, corrects = %s WHERE uscc = %s", d.ph(1), d.ph(2), d.ph(3), d.ph(4))
		corrects := any(nil)
		if i == 0 {
			corrects = "dsp-sql-1"
		}
		args := []any{base.Add(time.Duration(i+1) * time.Second), fmt.Sprintf("重庆市渝中区新地址%d号", i), corrects, keys[i]}
		if i >= 30 {
			q = fmt.Sprintf("UPDATE enterprise SET updated_at = %s, deleted = true WHERE uscc = %s", d.ph(1), d.ph(2))
			args = []any{args[0], keys[i]}
		}
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	// And 5 rows deleted outright, which only the key diff can see.
	for _, k := range keys[40:45] {
		if _, err := db.Exec(fmt.Sprintf("DELETE FROM enterprise WHERE uscc = %s", d.ph(1)), k); err != nil {
			t.Fatal(err)
		}
	}
	for step(a) > 0 {
	}
	stop()
	a, stop = newAdapter()
	defer stop()
	if got := step(a); got != 0 {
		t.Fatalf("after a restart with nothing new, a step read %d rows", got)
	}

	// The topic holds every change exactly once.
	cl, err := b.Kafka().Client(kgo.ConsumeTopics(item), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s, _ := schemas.For(it)
	ops := map[schemas.Op]int{}
	snap := map[string]int{}
	for total := 0; total < 295; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			_, payload, _ := schemas.Unframe(r.Value)
			e, err := schemas.Decode(s.Avro, payload)
			if err != nil {
				t.Fatal(err)
			}
			ops[e.Op]++
			if e.Op == schemas.OpSnapshot {
				snap[e.Key]++
			}
			if e.Op == schemas.OpUpdate && !strings.HasPrefix(e.Data["address"].(string), "重庆市渝中区新地址") {
				t.Errorf("update of %s carries address %v", e.Key, e.Data["address"])
			}
			total++
		})
	}
	extra := func() int {
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		return cl.PollFetches(c).NumRecords()
	}()
	if ops[schemas.OpSnapshot] != 250 || len(snap) != 250 || ops[schemas.OpUpdate] != 30 || ops[schemas.OpDelete] != 15 || extra != 0 {
		t.Fatalf("ops %v, distinct snapshot keys %d, %d more records: want 250 snapshots of 250 keys, 30 updates, 15 deletes (10 soft, 5 by key diff)", ops, len(snap), extra)
	}

	// The correcting change named its dispute on its inbox record, and no other did.
	named := testenv.NamedCorrections(ctx, t, b.Kafka(), it.Source, 295)
	if len(named) != 1 || named[0] != keys[0]+"=dsp-sql-1" {
		t.Errorf("changes naming a dispute: %v, want the update of %s naming dsp-sql-1", named, keys[0])
	}
}
