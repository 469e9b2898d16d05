package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/sinks"
	"github.com/jutong/jutong/server/audit"
)

const sinkDesc = `Operates on the sinks.

Subcommands:
  replay   re-deliver one item to one sink from an offset or a time, up to what the sink
           already holds, repairing rows or history lost or damaged in it. Nothing is
           duplicated: PostgreSQL sets each key changed in the range to its last change
           there (holding the partition's ledger row, so the running pipeline waits);
           ClickHouse inserts only the history rows it lacks. The ledger does not move.`

func runSink(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprintf(errOut, "Usage: jutong sink replay [flags]\n\n%s\n", sinkDesc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required: replay")
	}
	fs := cmdflag.New("sink replay", sinkDesc, errOut)
	sinkKind := fs.String("sink", "", "the sink kind: "+strings.Join(sinks.Names(), " or ")+" (required)")
	name := fs.String("sink-name", "", "the sink's name in its ledger; default: its kind's, as jutong dev and serve name them")
	item := fs.String("item", "", "the catalog item to replay (required)")
	fromOffset := fs.Int64("from-offset", 0, "replay every partition from this offset (clamped to the log start)")
	fromTime := fs.String("from-time", "", "replay from the first record at or after this time (RFC 3339, e.g. 2026-11-20T00:00:00+08:00)")
	var conn cmdflag.Conn
	conn.Register(fs, cmdflag.ConnDefaults{Brokers: "127.0.0.1:9092", User: "jutong", Registry: "https://127.0.0.1:8081",
		UserIs: "one allowed to read the item and the registry (the bus's admin)"})
	dsns := registerSinkFlags(fs, func(k sinks.Kind) string { return "the database of --sink " + k.Name })
	catDir := fs.EnvString("catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	keyPath := fs.EnvString("audit-key", "JUTONG_AUDIT_KEY", "", "the bus's audit signing key (<secrets-dir>/"+audit.KeyFile+"; jutong.env names dev's): a replay is audited, or it does not run (required)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *keyPath == "" {
		return errors.New("--audit-key (or JUTONG_AUDIT_KEY) is required: a replay is written to the audit trail before it runs")
	}
	cat, err := stack.LoadCatalog(*catDir)
	if err != nil {
		return err
	}
	it := cat.Item(*item)
	if it == nil {
		return fmt.Errorf("--item: no catalog item %q (see jutong catalog list)", *item)
	}
	from := pipeline.From{Offset: *fromOffset}
	if *fromTime != "" {
		if from.Time, err = time.Parse(time.RFC3339, *fromTime); err != nil {
			return fmt.Errorf("--from-time: %w", err)
		}
	}
	kind, ok := sinks.Lookup(*sinkKind)
	if !ok {
		return fmt.Errorf("--sink %q: want one of %s", *sinkKind, strings.Join(sinks.Names(), ", "))
	}
	s, err := sinks.Open(ctx, kind.Name, sinks.Options{Name: *name, DSN: *dsns[kind.Name], Catalog: cat})
	if err != nil {
		return err
	}
	sink, ok := s.(pipeline.Replayer)
	if !ok {
		s.Close()
		return fmt.Errorf("--sink %s: that sink cannot replay", kind.Name)
	}
	if !s.Accepts(it) {
		s.Close()
		return fmt.Errorf("%s does not hold %s (a PostgreSQL sink holds the items of the base and theme databases)", kind.Name, it.Code)
	}
	defer sink.Close()
	k := conn.Kafka()
	kopts, err := k.Opts()
	if err != nil {
		return err
	}
	// Audited: who, what item, which sink, from where; before it runs.
	key, err := audit.ReadKey(*keyPath)
	if err != nil {
		return fmt.Errorf("--audit-key: %w", err)
	}
	host, _ := os.Hostname()
	aw, err := audit.NewWriter(kopts, key, "replay@"+host)
	if err != nil {
		return err
	}
	defer func() { _ = aw.Close(context.WithoutCancel(ctx)) }()
	what := fmt.Sprintf("into sink %s (%s) from offset %d", sink.Name(), kind.Name, from.Offset)
	if !from.Time.IsZero() {
		what = fmt.Sprintf("into sink %s (%s) from time %s", sink.Name(), kind.Name, from.Time.Format(time.RFC3339))
	}
	what += ", run on host " + host
	if err := aw.Write(ctx, audit.Event{Kind: audit.Replay, Item: it.Code, Actor: k.User, Detail: what}); err != nil {
		return fmt.Errorf("the replay is not audited, so it does not run: %w", err)
	}
	n, rerr := replay(ctx, out, errOut, sink, it, from, pipeline.Config{Kafka: kopts, Registry: k.RegistryOpts(conn.Registry), Catalog: cat})
	done := "completed"
	if rerr != nil {
		done = "failed: " + rerr.Error()
	}
	if err := aw.Write(context.WithoutCancel(ctx), audit.Event{Kind: audit.Replayed, Item: it.Code, Actor: k.User, Records: n, Detail: done + "; " + what}); err != nil {
		return errors.Join(rerr, err)
	}
	return rerr
}

func replay(ctx context.Context, out, errOut io.Writer, sink pipeline.Replayer, it *catalog.Item, from pipeline.From, cfg pipeline.Config) (int64, error) {
	start := time.Now()
	var mu sync.Mutex
	last := time.Time{}
	progress := func(p pipeline.ReplayProgress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Done {
			fmt.Fprintf(errOut, "\r  partition %d: %d records replayed%20s\n", p.Partition, p.Read, "")
			return
		}
		if time.Since(last) > 500*time.Millisecond {
			last = time.Now()
			fmt.Fprintf(errOut, "\r  partition %d: %d / %d records", p.Partition, p.Read, p.Total)
		}
	}
	fmt.Fprintf(errOut, "Replaying %s into %s...\n", it.Code, sink.Name())
	n, err := pipeline.Replay(ctx, cfg, sink, it, from, progress)
	if err != nil {
		return int64(n), err
	}
	fmt.Fprintf(out, "replayed %d records of %s into %s in %s (audited)\n", n, it.Code, sink.Name(), time.Since(start).Round(time.Millisecond))
	return int64(n), nil
}
