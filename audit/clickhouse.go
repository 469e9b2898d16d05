package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// TableDDL is the audit table analysts query, e.g. who read an item last
// week and under which grant:
//
//	SELECT department, grant, sum(records) FROM audit
//	WHERE kind = 'read' AND item = 'population.resident_registration'
//	  AND time >= now() - INTERVAL 7 DAY GROUP BY department, grant
const TableDDL = `CREATE TABLE IF NOT EXISTS audit (
  time DateTime,
  time_ms Int64,
  kind String,
  department String,
  item String,
  application String,
  grant String,
  actor String,
  detail String,
  records Int64,
  window_start DateTime,
  window_end DateTime,
  consumer_group String,
  kafka_partition Int32,
  kafka_offset Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (kind, item, time, kafka_partition, kafka_offset)`

const insertSQL = `INSERT INTO audit (time, time_ms, kind, department, item, application, grant, actor, detail, records,
  window_start, window_end, consumer_group, kafka_partition, kafka_offset)`

// ToClickHouse copies the audit topic into ClickHouse until ctx is done,
// exactly once: every row carries its Kafka position, and on start the copy
// resumes after the highest position in the table.
func ToClickHouse(ctx context.Context, k kafkaconn.Config, dsn string, log *slog.Logger) error {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, TableDDL); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	start := map[int32]kgo.Offset{}
	rows, err := conn.Query(ctx, `SELECT kafka_partition, max(kafka_offset) FROM audit GROUP BY kafka_partition`)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	for rows.Next() {
		var p int32
		var o int64
		if err := rows.Scan(&p, &o); err != nil {
			rows.Close()
			return err
		}
		start[p] = kgo.NewOffset().At(o + 1)
	}
	rows.Close()
	parts := map[string]map[int32]kgo.Offset{Topic: start}
	cl, err := k.Client(kgo.ConsumePartitions(parts), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	// A partition without rows yet starts at the log start: add them.
	if err := assignAll(ctx, k, cl, start); err != nil {
		return err
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) { log.Warn("audit fetch", "partition", p, "err", err) })
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		for {
			if err := insert(ctx, conn, recs); err == nil {
				break
			} else if ctx.Err() != nil {
				return nil
			} else {
				log.Warn("audit: ClickHouse insert failed, will retry", "err", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(2 * time.Second):
				}
			}
			// After a failed insert the block may have landed: skip what did.
			if err := dropLanded(ctx, conn, &recs); err != nil {
				log.Warn("audit: read back", "err", err)
			}
		}
	}
}

func assignAll(ctx context.Context, k kafkaconn.Config, cl *kgo.Client, have map[int32]kgo.Offset) error {
	admin, err := k.Client()
	if err != nil {
		return err
	}
	defer admin.Close()
	add := map[string]map[int32]kgo.Offset{Topic: {}}
	md, err := kadmEnds(ctx, admin)
	if err != nil {
		return err
	}
	for _, p := range md {
		if _, ok := have[p]; !ok {
			add[Topic][p] = kgo.NewOffset().AtStart()
		}
	}
	if len(add[Topic]) > 0 {
		cl.AddConsumePartitions(add)
	}
	return nil
}

func insert(ctx context.Context, conn driver.Conn, recs []*kgo.Record) error {
	b, err := conn.PrepareBatch(ctx, insertSQL)
	if err != nil {
		return err
	}
	defer b.Abort() //nolint:errcheck
	for _, r := range recs {
		var e Event
		if err := json.Unmarshal(r.Value, &e); err != nil {
			e = Event{Kind: "unreadable", Detail: err.Error(), Time: r.Timestamp}
		}
		if err := b.Append(e.Time.Truncate(time.Second), e.Time.UnixMilli(), e.Kind, e.Department, e.Item, e.Application, e.Grant,
			e.Actor, e.Detail, e.Records, e.WindowStart.Truncate(time.Second), e.WindowEnd.Truncate(time.Second), e.Group,
			r.Partition, r.Offset); err != nil {
			return err
		}
	}
	return b.Send()
}

func dropLanded(ctx context.Context, conn driver.Conn, recs *[]*kgo.Record) error {
	last := map[int32]int64{}
	rows, err := conn.Query(ctx, `SELECT kafka_partition, max(kafka_offset) FROM audit GROUP BY kafka_partition`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var p int32
		var o int64
		if err := rows.Scan(&p, &o); err != nil {
			return err
		}
		last[p] = o
	}
	kept := (*recs)[:0]
	for _, r := range *recs {
		if o, ok := last[r.Partition]; !ok || r.Offset > o {
			kept = append(kept, r)
		}
	}
	*recs = kept
	return nil
}

// kadmEnds lists the audit topic's partitions.
func kadmEnds(ctx context.Context, admin *kgo.Client) ([]int32, error) {
	offs, err := kadm.NewClient(admin).ListEndOffsets(ctx, Topic)
	if err != nil {
		return nil, err
	}
	var out []int32
	offs.Each(func(o kadm.ListedOffset) { out = append(out, o.Partition) })
	return out, nil
}
