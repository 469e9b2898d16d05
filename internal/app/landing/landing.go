// Package landing says where a change has landed in the bus's sinks and
// feeds, for the disputes' receipts (ClickHouse's history gives the change's
// position, PostgreSQL its row or its ledger past that position, each masked
// feed its ledger), and reads a change at its position in its item's topic
// (which record a correction is of).
package landing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/dispute"
)

// Config says where the sinks are.
type Config struct {
	Catalog *catalog.Catalog
	// ClickHouse reads the sink's history; nil when there is no ClickHouse sink.
	ClickHouse driver.Conn
	// Postgres reads the sink's tables and ledger; nil when there is no
	// PostgreSQL sink. PostgresHolds says which items it holds.
	Postgres      *pgxpool.Pool
	PostgresHolds func(*catalog.Item) bool
	// Feeds names the sinks of an item's masked feeds
	// ("feed.<dept>.<item>.<grant>", their ledger's keys).
	Feeds func(it *catalog.Item) []string
	// Kafka reads the feeds' ledger and the items' topics, as the bus.
	Kafka   []kgo.Opt
	Decoder *schemas.Decoder
}

// Landing answers where changes landed.
type Landing struct{ cfg Config }

// New returns a Landing.
func New(cfg Config) *Landing { return &Landing{cfg: cfg} }

// Receipts says where a correcting change has landed: ClickHouse's history
// gives its position (and ClickHouse's receipt), PostgreSQL's ledger says
// whether the sink has passed it. Feeds are not counted yet.
func (l *Landing) Receipts(ctx context.Context, item, eventID string) ([]dispute.Receipt, []string, error) {
	it := l.cfg.Catalog.Item(item)
	if it == nil {
		return nil, nil, nil
	}
	var receipts []dispute.Receipt
	var waiting []string
	var pos *dispute.Receipt
	if l.cfg.ClickHouse != nil {
		var part int32
		var off int64
		var landed time.Time
		var key string
		err := l.cfg.ClickHouse.QueryRow(ctx, "SELECT kafka_partition, kafka_offset, landed_time, key FROM events WHERE item = ? AND event_id = ? LIMIT 1", item, eventID).Scan(&part, &off, &landed, &key)
		switch {
		case err == nil:
			pos = &dispute.Receipt{Sink: "clickhouse", Topic: it.Topic(), Partition: part, Offset: off, Landed: landed.UTC(), Key: key}
			receipts = append(receipts, *pos)
		case errors.Is(err, sql.ErrNoRows) || strings.Contains(err.Error(), "no rows"):
			waiting = append(waiting, "clickhouse")
		default:
			return nil, nil, err
		}
	}
	if db := l.cfg.Postgres; db != nil && l.cfg.PostgresHolds(it) {
		r, err := pgLanded(ctx, db, it, eventID, pos)
		if err != nil {
			return nil, nil, err
		}
		if r == nil {
			waiting = append(waiting, "postgres")
		} else {
			receipts = append(receipts, *r)
		}
	}
	// The grants' masked feeds of the item: their ledger past the change.
	if pos != nil {
		r, w, err := l.feedsLanded(ctx, it, pos)
		if err != nil {
			return nil, nil, err
		}
		receipts, waiting = append(receipts, r...), append(waiting, w...)
	}
	return receipts, waiting, nil
}

// feedsLanded reads the feeds' ledger: a feed has the change once its
// position in the item's topic passed it.
func (l *Landing) feedsLanded(ctx context.Context, it *catalog.Item, pos *dispute.Receipt) ([]dispute.Receipt, []string, error) {
	var names []string
	if l.cfg.Feeds != nil {
		names = l.cfg.Feeds(it)
	}
	if len(names) == 0 {
		return nil, nil, nil
	}
	next := map[string]int64{}
	err := kafkaconn.ReadAll(ctx, l.cfg.Kafka, feed.LedgerTopic, func(r *kgo.Record) {
		if n, err := strconv.ParseInt(string(r.Value), 10, 64); err == nil {
			next[string(r.Key)] = n
		}
	})
	if err != nil {
		return nil, nil, err
	}
	var receipts []dispute.Receipt
	var waiting []string
	for _, name := range names {
		if next[feed.LedgerKey(name, it.Topic(), pos.Partition)] > pos.Offset {
			receipts = append(receipts, dispute.Receipt{Sink: name, Topic: it.Topic(), Partition: pos.Partition, Offset: pos.Offset, Landed: time.Now().UTC()})
		} else {
			waiting = append(waiting, name)
		}
	}
	return receipts, waiting, nil
}

// pgLanded is PostgreSQL's receipt of a change: the row it made (still the
// current one), or, at a known position, the ledger past it.
func pgLanded(ctx context.Context, db *pgxpool.Pool, it *catalog.Item, eventID string, pos *dispute.Receipt) (*dispute.Receipt, error) {
	d, n := it.Namespace()
	var part int32
	var off int64
	var landed time.Time
	var key string
	err := db.QueryRow(ctx, fmt.Sprintf("SELECT _partition, _offset, _landed_at, %s::text FROM %s WHERE _event_id::text = $1", pgx.Identifier{it.Key}.Sanitize(), pgx.Identifier{d, n}.Sanitize()), eventID).Scan(&part, &off, &landed, &key)
	if err == nil {
		return &dispute.Receipt{Sink: "postgres", Topic: it.Topic(), Partition: part, Offset: off, Landed: landed.UTC(), Key: key}, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	if pos == nil {
		return nil, nil
	}
	var next int64
	err = db.QueryRow(ctx, "SELECT next_offset FROM jutong.sink_offsets WHERE sink = 'postgres' AND topic = $1 AND partition = $2", it.Topic(), pos.Partition).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && next <= pos.Offset) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Passed since, by a later change of the same key or a delete.
	return &dispute.Receipt{Sink: "postgres", Topic: it.Topic(), Partition: pos.Partition, Offset: pos.Offset, Landed: time.Now().UTC()}, nil
}

// Fetch reads and decodes one record of an item's topic.
func (l *Landing) Fetch(it *catalog.Item) func(ctx context.Context, partition int32, offset int64) (*schemas.Event, error) {
	return func(ctx context.Context, partition int32, offset int64) (*schemas.Event, error) {
		cl, err := kafkaconn.NewClient(l.cfg.Kafka, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{it.Topic(): {partition: kgo.NewOffset().At(offset)}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("fetch %s/%d@%d: %w", it.Topic(), partition, offset, err)
			}
			for _, r := range fs.Records() {
				if r.Offset == offset {
					return l.cfg.Decoder.DecodeItem(ctx, it, r.Value)
				}
			}
		}
	}
}
