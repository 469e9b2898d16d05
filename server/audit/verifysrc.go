package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// VerifyKafka walks topic (Topic, or a copy of it) from its start (read
// committed).
func VerifyKafka(ctx context.Context, k []kgo.Opt, topic string, pub ed25519.PublicKey) (Report, error) {
	v := NewVerifier(pub)
	err := kafkaconn.ReadAll(ctx, k, topic, func(r *kgo.Record) { v.Add(r.Offset, r.Value) })
	if err != nil {
		return Report{}, err
	}
	return v.Finish(), nil
}

// VerifyClickHouse walks the audit table in Kafka's order: each row's
// record (raw) through the chain, and each row's columns against its
// record, so that a column changed alone is found too.
func VerifyClickHouse(ctx context.Context, conn driver.Conn, pub ed25519.PublicKey) (Report, error) {
	rows, err := conn.Query(ctx, "SELECT kafka_offset, raw, "+RowColumns+" FROM audit ORDER BY kafka_partition, kafka_offset")
	if err != nil {
		return Report{}, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	v := NewVerifier(pub)
	names := strings.Split(RowColumns, ", ")
	for rows.Next() {
		var (
			off                                                         int64
			raw                                                         string
			t, ws, we                                                   time.Time
			ms, records                                                 int64
			kind, dept, item, app, grant, actor, detail, group, purpose string
			keys                                                        []string
		)
		if err := rows.Scan(&off, &raw, &t, &ms, &kind, &dept, &item, &app, &grant, &actor, &detail, &records, &ws, &we, &group, &purpose, &keys); err != nil {
			return Report{}, fmt.Errorf("audit: %w", err)
		}
		if raw == "" {
			// A row copied before the table kept the records.
			if v.chained {
				v.problem(off, "a row without its record after the chains began: inserted (kind %q, department %q)", kind, dept)
			} else {
				v.r.Legacy++
			}
			v.r.Records++
			continue
		}
		v.Add(off, []byte(raw))
		got := []any{t, ms, kind, dept, item, app, grant, actor, detail, records, ws, we, group, purpose, keys}
		want := Row([]byte(raw), time.Time{})
		for i := range got {
			if !sameValue(got[i], want[i]) {
				v.problem(off, "changed: column %s holds %v, its record says %v", names[i], got[i], want[i])
				break
			}
		}
	}
	if err := rows.Err(); err != nil {
		return Report{}, fmt.Errorf("audit: %w", err)
	}
	return v.Finish(), nil
}

func sameValue(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		// DateTime holds no time before 1970 (a zero time reads as 1970).
		return ok && max(ta.Unix(), 0) == max(tb.Unix(), 0)
	}
	if sa, ok := a.([]string); ok {
		sb, _ := b.([]string)
		return len(sa) == len(sb) && (len(sa) == 0 || reflect.DeepEqual(sa, sb))
	}
	return a == b
}
