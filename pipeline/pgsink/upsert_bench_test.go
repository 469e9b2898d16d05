package pgsink

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/internal/procstat"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
)

// BenchmarkUpsertPaths measures the ways to upsert a batch of an item's rows
// on the same data (batches of 5,000 distinct keys; the first 20,000 rows
// are created, every later one updates a row):
// what the PostgreSQL server spends per row (server-cpu-ns/op, read from
// /proc for the connection's backend) and this process (cpu-ns/op).
//
//	go test -run '^$' -bench UpsertPaths -benchtime 100000x ./pipeline/pgsink
func BenchmarkUpsertPaths(b *testing.B) {
	ctx := context.Background()
	cat, _ := catalog.Sample()
	it := cat.Item("legal_person.enterprise_registration")
	dsn := testenv.Postgres(b)
	s, err := New(ctx, Config{Name: "upsert-bench", DSN: dsn})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx, []*catalog.Item{it}); err != nil {
		b.Fatal(err)
	}
	g := synth.New(it, 11, time.Now())
	g.UpdateEvery, g.DeleteEvery = 0, 0 // distinct keys: a batch holds a key once, as the sink makes it
	const batch = 5000
	pool := make([][]any, 0, 4*batch)
	for range cap(pool) {
		ev := g.Next()
		ev.Source.Department, ev.PublishTime = it.Source, time.Now()
		row, err := rowValues(it, &pipeline.Record{Item: it, Event: ev}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		pool = append(pool, row)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		b.Fatal(err)
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || !strings.HasPrefix(string(comm), "postgres") {
		b.Skip("the PostgreSQL server is not on this machine: its CPU cannot be read")
	}
	paths := []struct {
		name       string
		fillfactor int // of the item's table: room on each page for an update in place (HOT)
		write      func(tx pgx.Tx, rows [][]any) error
	}{
		{"copy-temp-merge", 100, func(tx pgx.Tx, rows [][]any) error { // the sink's path from copyRows rows
			if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE jutong_stage (LIKE %s) ON COMMIT DROP", tableName(it))); err != nil {
				return err
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"jutong_stage"}, columns(it), pgx.CopyFromRows(rows)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, mergeSQL(it, "jutong_stage"))
			return err
		}},
		{"unnest-upsert", 100, func(tx pgx.Tx, rows [][]any) error { // the sink's path below copyRows rows
			_, err := tx.Exec(ctx, unnestSQL(it), byColumn(rows)...)
			return err
		}},
		{"unnest-merge", 100, func(tx pgx.Tx, rows [][]any) error { // PostgreSQL 15's MERGE over unnest
			_, err := tx.Exec(ctx, mergeUnnestSQL(it), byColumn(rows)...)
			return err
		}},
	}
	paths = append(paths, paths[0])
	paths[len(paths)-1].name, paths[len(paths)-1].fillfactor = "copy-temp-merge-fillfactor-70", 70
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			// Each path from the same start: an empty, vacuumed table.
			if _, err := conn.Exec(ctx, "TRUNCATE "+tableName(it)); err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s SET (fillfactor = %d)", tableName(it), p.fillfactor)); err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "VACUUM ANALYZE "+tableName(it)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			server, self := cpu(pid), cpu(os.Getpid())
			for done := 0; done < b.N; done += batch {
				rows := make([][]any, 0, batch)
				for i := 0; i < batch && done+i < b.N; i++ {
					rows = append(rows, pool[(done+i)%len(pool)])
				}
				tx, err := conn.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.write(tx, rows); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpu(pid)-server).Nanoseconds())/float64(b.N), "server-cpu-ns/op")
			b.ReportMetric(float64((cpu(os.Getpid())-self).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// mergeUnnestSQL is unnestSQL as a MERGE (PostgreSQL 15).
func mergeUnnestSQL(it *catalog.Item) string {
	cols := columns(it)
	var arrays, sets, vals []string
	for _, f := range it.Fields {
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", len(arrays)+1, columnType(f)))
	}
	for _, t := range metaTypes {
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", len(arrays)+1, t))
	}
	for _, c := range cols {
		q := pgx.Identifier{c}.Sanitize()
		vals = append(vals, "s."+q)
		if c != it.Key {
			sets = append(sets, q+" = s."+q)
		}
	}
	key := pgx.Identifier{it.Key}.Sanitize()
	return fmt.Sprintf("MERGE INTO %s t USING (SELECT * FROM unnest(%s) AS u(%s)) s ON t.%s = s.%s WHEN MATCHED THEN UPDATE SET %s WHEN NOT MATCHED THEN INSERT (%s) VALUES (%s)",
		tableName(it), strings.Join(arrays, ", "), columnList(it), key, key, strings.Join(sets, ", "), columnList(it), strings.Join(vals, ", "))
}

// cpu is a process's own CPU time (not its children's: the test process
// may have started the PostgreSQL server).
func cpu(pid int) time.Duration {
	d, _ := procstat.CPU(pid, false)
	return d
}
