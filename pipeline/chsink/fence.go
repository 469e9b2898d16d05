package chsink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// fence makes a ClickHouse writer's position read exact after a crash.
//
// ClickHouse has no transactions: a writer killed while its INSERT was in
// flight leaves the server finishing (or aborting) that insert on its own.
// Its successor reads its position back from the table (the highest Kafka
// offset landed); read before the orphaned insert ends, the position is
// behind the block that then lands, and the successor writes it twice.
// Every insert is therefore tagged with a query id under a prefix of the
// writer's own (jutong:<database>:<writer>:), and a position read first
// waits until no query under that prefix runs (system.processes).
//
// The events sink and the copies of the quarantine and the audit trail all
// write through a fence.
type fence struct {
	log    *slog.Logger
	conn   driver.Conn
	prefix string
	writer string
}

func newFence(log *slog.Logger, conn driver.Conn, database, writer string) fence {
	return fence{log: log, conn: conn, prefix: "jutong:" + database + ":" + writer + ":", writer: writer}
}

// tag returns ctx with a fresh query id under the fence's prefix, for one insert.
func (f fence) tag(ctx context.Context) context.Context {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return clickhouse.Context(ctx, clickhouse.WithQueryID(f.prefix+hex.EncodeToString(b[:])))
}

// wait returns once no insert under the fence runs on the server.
func (f fence) wait(ctx context.Context) error {
	logged := false
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var n uint64
		if err := f.conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE startsWith(query_id, ?)", f.prefix).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if !logged {
			f.log.Info("chsink: waiting for inserts of an earlier run to end before reading the position", "writer", f.writer, "running", n)
			logged = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chsink: %d inserts of %s still running after 2 minutes", n, f.writer)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
