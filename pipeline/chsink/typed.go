package chsink

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jutong/jutong/model/catalog"
)

// Typed views give analysts an item's records with real columns, on
// ClickHouse 18.16 and current versions alike: for each item, a view of its
// current state named after its code (legal_person_enterprise_registration,
// over the current view) and one of its history (…_history, over events),
// each field extracted from the record's JSON with the visitParamExtract
// functions and typed as the catalog says (Decimal, Date, DateTime, Int64,
// Float64, UInt8, String), NULL where the record has none. The change's
// metadata follow the fields, prefixed with an underscore as in
// PostgreSQL. A field added to the catalog recreates the item's views.

// TypedView names an item's typed view of its current state; its history's
// is the same with _history.
func TypedView(it *catalog.Item) string { return strings.ReplaceAll(it.Code, ".", "_") }

// fieldExpr extracts field f from the JSON column data, typed.
func fieldExpr(it *catalog.Item, f *catalog.Field) string {
	if f.Name == it.Key {
		return "key AS " + f.Name // present even on a delete
	}
	s := fmt.Sprintf("visitParamExtractString(data, '%s')", f.Name)
	var typed string
	switch f.Type {
	case catalog.TypeLong:
		typed = fmt.Sprintf("visitParamExtractInt(data, '%s')", f.Name)
	case catalog.TypeDouble:
		typed = fmt.Sprintf("visitParamExtractFloat(data, '%s')", f.Name)
	case catalog.TypeBoolean:
		typed = fmt.Sprintf("visitParamExtractBool(data, '%s')", f.Name)
	case catalog.TypeDecimal:
		// if() computes both branches: the conversion must not fail on ''.
		typed = fmt.Sprintf("toDecimal128(if(%s = '', '0', %s), %d)", s, s, f.Scale)
	case catalog.TypeDate:
		typed = fmt.Sprintf("toDate(if(%s = '', '1970-01-01', %s))", s, s)
	case catalog.TypeTimestamp:
		typed = fmt.Sprintf("parseDateTimeBestEffortOrNull(%s)", s)
	default:
		typed = s
	}
	return fmt.Sprintf("if(visitParamExtractRaw(data, '%s') IN ('', 'null'), NULL, %s) AS %s", f.Name, typed, f.Name)
}

// typedViews returns an item's two views: name -> its columns and its DDL.
func typedViews(it *catalog.Item) map[string]struct {
	cols []string
	ddl  string
} {
	var fields, names []string
	for _, f := range it.Fields {
		fields = append(fields, fieldExpr(it, f))
		names = append(names, f.Name)
	}
	current := append(slices.Clone(names), "_op", "_source_department", "_event_time", "_landed_time")
	history := append(slices.Clone(names), "_event_id", "_op", "_source_department", "_source_system", "_event_time", "_publish_time", "_landed_time", "_partition", "_offset")
	name := TypedView(it)
	item := strings.ReplaceAll(it.Code, "'", "")
	return map[string]struct {
		cols []string
		ddl  string
	}{
		name: {current, fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s AS SELECT %s,\n  op AS _op, source_department AS _source_department, event_time AS _event_time, landed_time AS _landed_time\nFROM current WHERE item = '%s'",
			name, strings.Join(fields, ",\n  "), item)},
		name + "_history": {history, fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s_history AS SELECT %s,\n  event_id AS _event_id, op AS _op, source_department AS _source_department, source_system AS _source_system,\n  event_time AS _event_time, publish_time AS _publish_time, landed_time AS _landed_time, kafka_partition AS _partition, kafka_offset AS _offset\nFROM events WHERE item = '%s'",
			name, strings.Join(fields, ",\n  "), item)},
	}
}

// ensureTypedViews creates the items' typed views that are missing, and
// recreates those whose columns the catalog changed.
func (s *Sink) ensureTypedViews(ctx context.Context, items []*catalog.Item) error {
	have := map[string][]string{}
	rows, err := s.conn.Query(ctx, "SELECT table, name FROM system.columns WHERE database = currentDatabase()")
	if err != nil {
		return fmt.Errorf("chsink: typed views: %w", err)
	}
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			rows.Close()
			return err
		}
		have[table] = append(have[table], col)
	}
	rows.Close()
	for _, it := range items {
		for name, v := range typedViews(it) {
			cols, ok := have[name]
			want := slices.Clone(v.cols)
			slices.Sort(cols)
			slices.Sort(want)
			if ok && slices.Equal(cols, want) {
				continue
			}
			if ok {
				if err := s.conn.Exec(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
					return fmt.Errorf("chsink: typed view %s: %w", name, err)
				}
			}
			if err := s.conn.Exec(ctx, v.ddl); err != nil {
				return fmt.Errorf("chsink: typed view %s: %w", name, err)
			}
		}
	}
	return nil
}
