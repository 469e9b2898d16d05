package pgsink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/model/catalog"
)

// metaColumns are the change metadata every item table carries after its fields.
var metaColumns = []string{"_event_id", "_op", "_event_time", "_publish_time", "_landed_at", "_partition", "_offset"}

// metaTypes are the metaColumns' types, in order.
var metaTypes = []string{"uuid", "text", "timestamptz", "timestamptz", "timestamptz", "int", "bigint"}

const metaDDL = `_event_id uuid NOT NULL, _op text NOT NULL, _event_time timestamptz NOT NULL,
  _publish_time timestamptz NOT NULL, _landed_at timestamptz NOT NULL, _partition int NOT NULL, _offset bigint NOT NULL`

// DisputesDDL is the flag table of disputed records (package dispute
// writes it): a row per open dispute of a record. Each item's table has a
// view <name>_disputed joining it (flagDDL).
const DisputesDDL = `CREATE SCHEMA IF NOT EXISTS jutong;
CREATE TABLE IF NOT EXISTS jutong.disputes_open (
  item text NOT NULL,
  key text NOT NULL,
  dispute_id text NOT NULL,
  fields text[] NOT NULL,
  raised_at timestamptz NOT NULL,
  due timestamptz NOT NULL,
  PRIMARY KEY (item, key, dispute_id)
)`

// flagView names an item's view with the dispute flag.
func flagView(it *catalog.Item) string {
	d, n := it.Namespace()
	return pgx.Identifier{d, n + "_disputed"}.Sanitize()
}

// flagDDL (re)makes an item's view of its table with the ids of the open
// disputes of each record (dispute_ids, NULL when none).
func flagDDL(it *catalog.Item) string {
	// CASCADE: the theme databases' views over it are made again after.
	return fmt.Sprintf(`DROP VIEW IF EXISTS %s CASCADE;
CREATE VIEW %s AS SELECT t.*, f.dispute_ids FROM %s t LEFT JOIN
  (SELECT key, array_agg(dispute_id ORDER BY dispute_id) AS dispute_ids FROM jutong.disputes_open WHERE item = %s GROUP BY key) f
  ON f.key = t.%s;
`, flagView(it), flagView(it), tableName(it), quoteLiteral(it.Code), pgx.Identifier{it.Key}.Sanitize())
}

const ledgerDDL = `CREATE SCHEMA IF NOT EXISTS jutong;
CREATE TABLE IF NOT EXISTS jutong.sink_offsets (
  sink text NOT NULL,
  topic text NOT NULL,
  partition int NOT NULL,
  next_offset bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sink, topic, partition)
)`

func columnType(f *catalog.Field) string {
	switch f.Type {
	case catalog.TypeLong:
		return "bigint"
	case catalog.TypeDouble:
		return "double precision"
	case catalog.TypeBoolean:
		return "boolean"
	case catalog.TypeDecimal:
		return fmt.Sprintf("numeric(%d,%d)", f.Precision, f.Scale)
	case catalog.TypeDate:
		return "date"
	case catalog.TypeTimestamp:
		return "timestamptz"
	default:
		return "text"
	}
}

// tableName is the quoted schema.table of an item.
func tableName(it *catalog.Item) string {
	d, n := it.Namespace()
	return pgx.Identifier{d, n}.Sanitize()
}

// lookupIndex names the index of one of an item's lookup fields (unique
// in the item's schema, within PostgreSQL's 63 bytes).
func lookupIndex(it *catalog.Item, field string) string {
	_, n := it.Namespace()
	name := n + "_" + field + "_lookup"
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(name))
		name = name[:50] + "_" + hex.EncodeToString(sum[:6])
	}
	return name
}

// lookupDDL creates the indexes of the item's lookup fields that idx (as
// "schema.index") lacks.
func lookupDDL(it *catalog.Item, idx map[string]bool) string {
	d, _ := it.Namespace()
	var b strings.Builder
	for _, f := range it.Lookup {
		name := lookupIndex(it, f)
		if idx[d+"."+name] {
			continue
		}
		fmt.Fprintf(&b, "CREATE INDEX IF NOT EXISTS %s ON %s (%s);\n", pgx.Identifier{name}.Sanitize(), tableName(it), pgx.Identifier{f}.Sanitize())
	}
	return b.String()
}

// existingIndexes lists the indexes in the items' schemas, as "schema.index".
func existingIndexes(ctx context.Context, tx interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, items []*catalog.Item) (map[string]bool, error) {
	var list []string
	for _, it := range items {
		d, _ := it.Namespace()
		list = append(list, d)
	}
	rows, err := tx.Query(ctx, `SELECT schemaname || '.' || indexname FROM pg_indexes WHERE schemaname = ANY($1)`, list)
	if err != nil {
		return nil, fmt.Errorf("pgsink: read the indexes: %w", err)
	}
	out := map[string]bool{}
	var name string
	_, err = pgx.ForEachRow(rows, []any{&name}, func() error { out[name] = true; return nil })
	return out, err
}

func tableDDL(it *catalog.Item) string {
	d, _ := it.Namespace()
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s;\n", pgx.Identifier{d}.Sanitize())
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (\n", tableName(it))
	for _, f := range it.Fields {
		null := ""
		if f.Required {
			null = " NOT NULL"
		}
		fmt.Fprintf(&b, "  %s %s%s,\n", pgx.Identifier{f.Name}.Sanitize(), columnType(f), null)
	}
	fmt.Fprintf(&b, "  %s,\n  PRIMARY KEY (%s)\n) WITH (fillfactor = %d);\n", metaDDL, pgx.Identifier{it.Key}.Sanitize(), FillFactor)
	return b.String()
}

// FillFactor is the item tables' fillfactor: room on every page for the
// next version of its rows, so that an update that changes no indexed
// column is written in place (a HOT update: no new index entries). Measured
// by BenchmarkUpsertPaths (docs/benchmarks.md): about a third less server
// CPU per upserted row than the default 100, for 1/0.7 the space of a table
// that is only ever inserted into. Tables made before keep theirs (ALTER
// TABLE ... SET (fillfactor = 70) gives new pages the room).
const FillFactor = 70

// existingColumns lists the columns of the items' tables that exist, as
// "schema.table" -> column -> true.
func existingColumns(ctx context.Context, tx interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, items []*catalog.Item) (map[string]map[string]bool, error) {
	schemas := map[string]bool{}
	for _, it := range items {
		d, _ := it.Namespace()
		schemas[d] = true
	}
	list := make([]string, 0, len(schemas))
	for d := range schemas {
		list = append(list, d)
	}
	rows, err := tx.Query(ctx, `SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns WHERE table_schema = ANY($1)`, list)
	if err != nil {
		return nil, fmt.Errorf("pgsink: read the tables: %w", err)
	}
	out := map[string]map[string]bool{}
	var table, col string
	_, err = pgx.ForEachRow(rows, []any{&table, &col}, func() error {
		if out[table] == nil {
			out[table] = map[string]bool{}
		}
		out[table][col] = true
		return nil
	})
	return out, err
}

// evolveDDL creates an item's table when it does not exist, or adds the
// columns of fields added to the catalog since (optional, as compatibility
// requires); "" when the table is as the catalog says.
func evolveDDL(it *catalog.Item, have map[string]map[string]bool, idx map[string]bool) string {
	d, n := it.Namespace()
	cols, ok := have[d+"."+n]
	if !ok {
		return tableDDL(it) + commentsDDL(it) + lookupDDL(it, idx) + flagDDL(it)
	}
	var b strings.Builder
	for _, f := range it.Fields {
		if cols[f.Name] {
			continue
		}
		fmt.Fprintf(&b, "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s;\n", tableName(it), pgx.Identifier{f.Name}.Sanitize(), columnType(f))
		fmt.Fprintf(&b, "COMMENT ON COLUMN %s.%s IS %s;\n", tableName(it), pgx.Identifier{f.Name}.Sanitize(), quoteLiteral(f.Title))
	}
	b.WriteString(lookupDDL(it, idx))
	// A changed table, or one made before the flag: its flagged view anew.
	if _, has := have[d+"."+n+"_disputed"]; b.Len() > 0 || !has {
		b.WriteString(flagDDL(it))
	}
	return b.String()
}

// commentsDDL labels an item's table and columns with the catalog's names.
func commentsDDL(it *catalog.Item) string {
	var b strings.Builder
	fmt.Fprintf(&b, "COMMENT ON TABLE %s IS %s;\n", tableName(it), quoteLiteral(it.Name+" — "+it.NameEN+" (source: "+it.Source+")"))
	for _, f := range it.Fields {
		fmt.Fprintf(&b, "COMMENT ON COLUMN %s.%s IS %s;\n", tableName(it), pgx.Identifier{f.Name}.Sanitize(), quoteLiteral(f.Title))
	}
	return b.String()
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// mergeSQL upserts the staging table into the item table.
func mergeSQL(it *catalog.Item, stage string) string {
	list := columnList(it)
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s %s", tableName(it), list, list, stage, onConflict(it))
}

// unnestSQL upserts rows given as one array parameter per column.
func unnestSQL(it *catalog.Item) string {
	var arrays []string
	for _, f := range it.Fields {
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", len(arrays)+1, columnType(f)))
	}
	for _, t := range metaTypes {
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", len(arrays)+1, t))
	}
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT * FROM unnest(%s) %s", tableName(it), columnList(it), strings.Join(arrays, ", "), onConflict(it))
}

func columnList(it *catalog.Item) string {
	cols := columns(it)
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(quoted, ", ")
}

func onConflict(it *catalog.Item) string {
	var sets []string
	for _, c := range columns(it) {
		if c != it.Key {
			q := pgx.Identifier{c}.Sanitize()
			sets = append(sets, q+" = EXCLUDED."+q)
		}
	}
	return fmt.Sprintf("ON CONFLICT (%s) DO UPDATE SET %s", pgx.Identifier{it.Key}.Sanitize(), strings.Join(sets, ", "))
}

// columns lists an item table's columns in COPY order.
func columns(it *catalog.Item) []string {
	out := make([]string, 0, len(it.Fields)+len(metaColumns))
	for _, f := range it.Fields {
		out = append(out, f.Name)
	}
	return append(out, metaColumns...)
}

// themeDDL builds a theme database: a schema named after the theme with a
// view per item (<domain>_<name>) and the theme's own views. Views are
// dropped and created again so that a changed definition takes effect.
func themeDDL(ctx context.Context, tx pgx.Tx, th *catalog.Theme, items map[string]*catalog.Item) error {
	schema := pgx.Identifier{th.Code}.Sanitize()
	stmts := []string{"CREATE SCHEMA IF NOT EXISTS " + schema,
		"COMMENT ON SCHEMA " + schema + " IS " + quoteLiteral(th.Name+" — "+th.NameEN)}
	for _, v := range th.Views {
		stmts = append(stmts, "DROP VIEW IF EXISTS "+pgx.Identifier{th.Code, v.Name}.Sanitize())
	}
	for _, code := range th.Items {
		it := items[code]
		if it == nil {
			return fmt.Errorf("pgsink: theme %s uses %s, which this sink does not hold", th.Code, code)
		}
		d, n := it.Namespace()
		// Over the item's flagged view: the theme shows the disputes too.
		stmts = append(stmts, fmt.Sprintf("CREATE OR REPLACE VIEW %s AS SELECT * FROM %s",
			pgx.Identifier{th.Code, d + "_" + n}.Sanitize(), flagView(it)))
	}
	for _, v := range th.Views {
		stmts = append(stmts, fmt.Sprintf("CREATE VIEW %s AS %s", pgx.Identifier{th.Code, v.Name}.Sanitize(), v.SQL))
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st); err != nil {
			return fmt.Errorf("pgsink: theme %s: %s: %w", th.Code, st, err)
		}
	}
	return nil
}
