package cli

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
)

func TestMain(m *testing.M) {
	// The test binary run again as `jutong` itself (see startDevProcess).
	if args := os.Getenv(envChildArgs); args != "" {
		syscall.Umask(0o077) // as cmd/jutong does
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Run(ctx, strings.Split(args, "\n"), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	testenv.Main(m)
}

func TestAdapterCommands(t *testing.T) {
	cat, _ := catalog.Sample()
	secrets := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true, SecretsDir: secrets,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	common := []string{"--brokers", strings.Join(b.Kafka().Brokers, ","), "--registry", b.RegistryURL(),
		"--credentials", filepath.Join(secrets, "credentials.json")}

	// adapter file: two extracts, the second diffed against the first.
	dir := t.TempDir()
	header := "division_code,name,level,parent_code,effective_on\n"
	one := header + "500103,渝中区,DISTRICT,500100,1997-06-18\n500104,大渡口区,DISTRICT,500100,1997-06-18\n"
	two := header + "500103,渝中区,DISTRICT,500100,1997-06-18\n500105,江北区,DISTRICT,500100,1997-06-18\n"
	p1, p2 := filepath.Join(dir, "divisions-1.csv"), filepath.Join(dir, "divisions-2.csv")
	_ = os.WriteFile(p1, []byte(one), 0o644)
	_ = os.WriteFile(p2, []byte(two), 0o644)
	out, err := run(t, append(append([]string{"adapter", "file", "--item", "geography.administrative_division", "--state-dir", dir}, common...), p1, p2)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "divisions-1.csv: 2 rows: 2 created, 0 updated, 0 deleted") ||
		!strings.Contains(out, "divisions-2.csv: 2 rows: 1 created, 0 updated, 1 deleted, 1 unchanged") {
		t.Fatalf("file adapter output:\n%s", out)
	}

	// adapter sql --once: a PostgreSQL table published, then nothing new.
	dsn := testenv.Postgres(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE rating (uscc text PRIMARY KEY, taxpayer_name text, rating text, year bigint, assessed_on date, changed timestamptz);
		INSERT INTO rating VALUES ('914403001922038216', '华为技术有限公司', 'A', 2025, '2026-04-01', now()),
		                          ('914403001922038217', '错误校验码公司', 'A', 2025, '2026-04-01', now())`); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"adapter", "sql", "--once", "--item", "legal_person.tax_credit_rating", "--driver", "postgres",
		"--dsn", dsn, "--table", "rating", "--updated-column", "changed"}, common...)
	out, err = run(t, args...)
	if err != nil || !strings.Contains(out, "published 2 rows of legal_person.tax_credit_rating from rating as tax") {
		t.Fatalf("sql adapter: %v\n%s", err, out)
	}
	out, err = run(t, args...)
	if err != nil || !strings.Contains(out, "published 0 rows") {
		t.Fatalf("sql adapter, second run: %v\n%s", err, out)
	}
}
