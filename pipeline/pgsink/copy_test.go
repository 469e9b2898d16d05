package pgsink

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/sinktest"
	"github.com/jutong/jutong/schemas"
)

// TestBinaryCopy: for every item the sink holds, rows copied in the binary
// format from columns are, as PostgreSQL prints them, the rows pgx's
// CopyFrom copies from the same events (NULLs, decimals beyond an int64,
// negative and tiny decimals, dates before 2000 included); and a batch
// large enough for the COPY path lands as those rows.
func TestBinaryCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cat, _ := catalog.Sample()
	dsn := testenv.Postgres(t)
	s, err := New(ctx, Config{Name: "pg", DSN: dsn, Themes: cat.Themes})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var items []*catalog.Item
	for _, it := range cat.Items {
		if s.Accepts(it) {
			items = append(items, it)
		}
	}
	if err := s.Prepare(ctx, items); err != nil {
		t.Fatal(err)
	}
	pool := testenv.PostgresPool(t, dsn)
	landed := time.Now()
	for k, it := range items {
		g := synth.New(it, uint64(k+1), time.Now())
		var recs []*pipeline.Record
		for n := 0; len(recs) < 200; n++ {
			ev := g.Next()
			if ev.Data == nil {
				continue
			}
			ev.PublishTime = ev.EventTime.Add(time.Second).Truncate(time.Millisecond)
			if n%4 == 0 {
				synth.ClearOptional(it, ev.Data)
			}
			for _, f := range it.Fields {
				if f.Type == catalog.TypeDecimal && ev.Data[f.Name] != nil {
					// Every shape of a decimal the column can hold.
					ints := f.Precision - f.Scale
					vals := []string{"0", "-0.0001", fmt.Sprintf("1e%d", ints-1), fmt.Sprintf("-%de-%d", n, f.Scale), "12345678901234567890.123456789"}
					r, _ := new(big.Rat).SetString(vals[n%len(vals)])
					if ok := fitsDecimal(r, f); ok {
						ev.Data[f.Name] = r
					}
				}
			}
			recs = append(recs, &pipeline.Record{Item: it, Partition: int32(n % 3), Offset: int64(n), Event: ev})
		}
		batch := make([]pipeline.Record, len(recs))
		for i, r := range recs {
			batch[i] = *r
		}
		colRecs := sinktest.AsColumns(t, batch)
		crs := make([]copyRow, len(colRecs))
		for i := range colRecs {
			crs[i] = copyRow{colRecs[i].Cols, colRecs[i].Row, &colRecs[i]}
		}
		rows, err := rowsOf(it, recs, landed)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Rolled back whatever happens: a pool does not close over an open transaction.
		defer tx.Rollback(context.Background()) //nolint:errcheck
		for _, stage := range []string{"a", "b"} {
			if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (LIKE %s) ON COMMIT DROP", stage, tableName(it))); err != nil {
				t.Fatal(err)
			}
		}
		if err := copyColumns(ctx, tx, "a", it, crs, landed); err != nil {
			t.Fatalf("%s: binary copy: %v", it.Code, err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"b"}, columns(it), pgx.CopyFromRows(rows)); err != nil {
			t.Fatalf("%s: pgx copy: %v", it.Code, err)
		}
		if n, diff := compareRows(t, tx, "a", "b"); n != len(recs) || diff != 0 {
			t.Fatalf("%s: %d rows copied (want %d), %d differ from pgx's", it.Code, n, len(recs), diff)
		}
		_ = tx.Rollback(ctx)
	}

	// Through Write: enough rows of one item for the COPY path.
	it := cat.Item("legal_person.enterprise_registration")
	g := synth.New(it, 99, time.Now())
	g.UpdateEvery, g.DeleteEvery = 0, 0
	var batch []pipeline.Record
	var recs []*pipeline.Record
	for n := 0; n < copyRows+100; n++ {
		ev := g.Next()
		ev.PublishTime = ev.EventTime.Add(time.Second).Truncate(time.Millisecond)
		batch = append(batch, pipeline.Record{Item: it, Partition: 0, Offset: int64(n), Event: ev})
	}
	for i := range batch {
		recs = append(recs, &batch[i])
	}
	if err := s.Write(ctx, sinktest.AsColumns(t, batch), landed); err != nil {
		t.Fatal(err)
	}
	rows, err := rowsOf(it, recs, landed)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE ref (LIKE %s) ON COMMIT DROP", tableName(it))); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ref"}, columns(it), pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	if n, diff := compareRows(t, tx, tableName(it), "ref"); n != len(batch) || diff != 0 {
		t.Fatalf("the table after a COPY-sized write: %d rows (want %d), %d differ from pgx's", n, len(batch), diff)
	}
}

// compareRows counts the rows of table a, and the rows of a and b that the
// other lacks, as PostgreSQL prints them (row::text: every value and its
// scale).
func compareRows(t *testing.T, tx pgx.Tx, a, b string) (n, diff int) {
	t.Helper()
	q := fmt.Sprintf(`SELECT (SELECT count(*) FROM %[1]s), (SELECT count(*) FROM (
		(SELECT x::text FROM %[1]s x EXCEPT SELECT y::text FROM %[2]s y) UNION ALL (SELECT y::text FROM %[2]s y EXCEPT SELECT x::text FROM %[1]s x)) d)`, a, b)
	if err := tx.QueryRow(context.Background(), q).Scan(&n, &diff); err != nil {
		t.Fatal(err)
	}
	return n, diff
}

// fitsDecimal says whether the field holds r exactly.
func fitsDecimal(r *big.Rat, f *catalog.Field) bool {
	u := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.Scale)), nil)))
	if !u.IsInt() {
		return false
	}
	return new(big.Int).Abs(u.Num()).Cmp(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.Precision)), nil)) < 0
}

var _ = schemas.OpCreate

// TestNumericBinary: decimals of every scale written in numeric's binary
// form read back, as PostgreSQL prints them, as the exact value at its scale.
func TestNumericBinary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := testenv.PostgresPool(t, testenv.Postgres(t))
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE n (i int, v numeric)"); err != nil {
		t.Fatal(err)
	}
	var want []string
	buf := append([]byte(nil), copyHeader...)
	i := 0
	for _, scale := range []int{0, 1, 2, 4, 5, 8, 9, 12} {
		f := &catalog.Field{Name: "v", Type: catalog.TypeDecimal, Precision: 38, Scale: scale}
		it := &catalog.Item{Code: "x.y", Key: "v", Fields: []*catalog.Field{f}}
		for _, v := range []string{"0", "1", "-1", "0.5", "-0.00000001", "0.000000000001", "10000", "99990000.0001", "-123456789012345678.9", "12345678901234567890123.45"} {
			r, _ := new(big.Rat).SetString(v)
			if !fitsDecimal(r, f) {
				continue
			}
			c := schemas.NewColumns(it)
			if err := c.AppendEvent(&schemas.Event{Op: schemas.OpCreate, Key: "k", Data: map[string]any{"v": r}}); err != nil {
				t.Fatal(err)
			}
			buf = binary.BigEndian.AppendUint16(buf, 2)
			buf = binary.BigEndian.AppendUint32(buf, 4)
			buf = binary.BigEndian.AppendUint32(buf, uint32(i))
			if buf, err = appendNumeric(buf, &c.Fields[0], 0); err != nil {
				t.Fatal(err)
			}
			want = append(want, r.FloatString(scale))
			i++
		}
	}
	buf = binary.BigEndian.AppendUint16(buf, 0xFFFF)
	if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(buf), "COPY n (i, v) FROM STDIN (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT i, v::text FROM n ORDER BY i")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var k int
		var got string
		if err := rows.Scan(&k, &got); err != nil {
			t.Fatal(err)
		}
		if got != want[k] {
			t.Errorf("value %d: PostgreSQL reads %s, want %s", k, got, want[k])
		}
		n++
	}
	if n != len(want) {
		t.Fatalf("%d values read, want %d", n, len(want))
	}
}
