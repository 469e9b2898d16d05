package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

const benchDesc = `Measures Jutong on this machine and prints the figures.

Subcommands:
  publish   the publisher SDK: events checked at the door, Avro-encoded and produced
            to an embedded cluster (in this process), until every one is acknowledged
  pipeline  the whole bus: publishers -> embedded Kafka -> pipelines -> PostgreSQL base
            database and ClickHouse, exactly once: events/s landed per sink, latency
            (p50/p99 publish -> landed) at a steady rate, lag, CPU, peak RSS
  door      the door alone: a department's inbox filled beforehand, then checked and
            forwarded, exactly once, to the item's topic
  topics    how the pipeline process's start-up and memory grow with the number of item
            topics (jutong serve in a child process, one event per topic)
  query     lookups through the HTTP API by key and by a lookup field, from concurrent
            clients, with auth, grant check, masking, rate limit and audit on: calls/s,
            p50/p99/p999 latency, CPU per call, audit rows landed
  open      the open system: CKAN package_search and the portal's search page from
            concurrent clients (calls/s, p50/p99), and the download of a --records row
            CSV release (MB/s, CPU per MB)
  federation
            a city bus and a district bus and the bridge between them, each a process:
            the bridge's events/s and CPU per 100,000 events against the receiving bus's
  brokers   (used by --brokers-process) an embedded cluster in a process of its own on
            free ports, until its stdin closes
  compression
            what each Kafka compression codec costs per record (franz-go's codecs, on an
            item's records in produce-sized batches): ratio, compress and decompress CPU`

// Run runs `jutong bench`.
func Run(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || (strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help") {
		return benchPipeline(ctx, args, out, errOut) // plain `jutong bench`: the whole bus
	}
	switch args[0] {
	case "pipeline":
		return benchPipeline(ctx, args[1:], out, errOut)
	case "topics":
		return benchTopics(ctx, args[1:], out, errOut)
	case "door":
		return benchDoor(ctx, args[1:], out, errOut)
	case "query":
		return benchQuery(ctx, args[1:], out, errOut)
	case "compression":
		return benchCompression(ctx, args[1:], out, errOut)
	case "open":
		return benchOpen(ctx, args[1:], out, errOut)
	case "brokers":
		return benchBrokers(ctx, args[1:], out, errOut)
	case "federation":
		return benchFederation(ctx, args[1:], out, errOut)
	}
	if len(args) == 0 || args[0] != "publish" {
		fmt.Fprintf(errOut, "Usage: jutong bench [publish|pipeline|door|topics|query|open|federation|compression] [flags]   (no subcommand: pipeline)\n\n%s\n", benchDesc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required: publish, pipeline, door, topics, query, open, federation or compression")
	}
	return benchPublish(ctx, args[1:], out, errOut)
}

// benchPublish runs `jutong bench publish`.
func benchPublish(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("bench publish", benchDesc, errOut)
	events := fs.Int("events", 1_000_000, "events to publish")
	item := fs.String("item", "legal_person.enterprise_registration", "the catalog item (the default has 15 fields)")
	brokers := fs.Int("broker-count", 3, "embedded brokers")
	distinct := fs.Int("distinct", 50_000, "distinct synthetic events, published in turn (bounds the memory the generator takes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cat, it, err := sampleItem(*item)
	if err != nil {
		return err
	}
	b, pub, err := benchBus(ctx, cat, it, *brokers, nil)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	defer pub.Close()
	g := synth.New(it, 1, time.Now())
	g.DeleteEvery = 0 // every event carries a full record
	pool := make([]*schemas.Event, min(*distinct, *events))
	for i := range pool {
		pool[i] = g.Next()
	}
	fmt.Fprintf(out, "jutong bench publish: %d events of %s (%d fields), %d embedded brokers, GOMAXPROCS %d\n",
		*events, it.Code, len(it.Fields), *brokers, runtime.GOMAXPROCS(0))

	if err := checkAndEncode(out, it, pool, min(*events, 200_000)); err != nil {
		return err
	}
	return publishAll(ctx, out, pub, it, pool, *events)
}

// sampleItem is an item of the sample catalog.
func sampleItem(code string) (*catalog.Catalog, *catalog.Item, error) {
	cat, err := catalog.Sample()
	if err != nil {
		return nil, nil, err
	}
	it := cat.Item(code)
	if it == nil {
		return nil, nil, fmt.Errorf("no catalog item %q", code)
	}
	return cat, it, nil
}

// benchBus starts an embedded bus without a door on the inboxes (what is
// measured is the publishing; bench door runs its own door), and a
// publisher of the item's source department.
func benchBus(ctx context.Context, cat *catalog.Catalog, it *catalog.Item, brokers int, external *kafkaconn.Config) (*bus.Bus, *producers.Publisher, error) {
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, Brokers: brokers, KafkaPorts: make([]int, brokers), ApplyTopics: true, NoDoor: true,
		AdminUser: "jutong", AdminPassword: "bench", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		Kafka: external, CreateUsers: external != nil, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, nil, err
	}
	dept := cat.Department(it.Source)
	pub, err := producers.New(ctx, cat, it.Source, connect.Config{Brokers: b.Kafka().Brokers, User: dept.Principal, Password: b.Credentials[dept.Principal], Registry: b.RegistryURL()})
	if err != nil {
		b.Close(context.Background())
		return nil, nil, err
	}
	return b, pub, nil
}

// checkAndEncode measures the door and the encoder alone, on one core.
func checkAndEncode(out io.Writer, it *catalog.Item, pool []*schemas.Event, n int) error {
	s, err := schemas.For(it)
	if err != nil {
		return err
	}
	now := time.Now().Add(time.Minute)
	var buf []byte
	t0 := time.Now()
	for i := 0; i < n; i++ {
		e := pool[i%len(pool)]
		e.Source = schemas.Source{Department: it.Source, System: "bench", Adapter: "sdk"}
		e.PublishTime = now
		if v := rules.Check(it, it.Source, e, now); v != nil {
			return v
		}
		if buf, err = s.AppendEncode(buf[:0], e); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "  checked + encoded, one core, no Kafka   %10.0f events/s\n", float64(n)/time.Since(t0).Seconds())
	return nil
}

// publishAll measures the whole publish path to the embedded cluster.
func publishAll(ctx context.Context, out io.Writer, pub *producers.Publisher, it *catalog.Item, pool []*schemas.Event, events int) error {
	if _, err := pub.Publish(ctx, it.Code, pool[0]); err != nil { // registers the schema
		return err
	}
	var bytes, failed atomic.Int64
	var wg sync.WaitGroup
	done := func(r producers.Result) {
		if r.Err != nil {
			failed.Add(1)
		}
		bytes.Add(int64(r.Bytes))
		wg.Done()
	}
	before := resourceUsage()
	t0 := time.Now()
	const chunk = 2000
	for sent := 0; sent < events; sent += chunk {
		k := min(chunk, events-sent)
		batch := make([]*schemas.Event, k)
		for i := range batch {
			batch[i] = pool[(sent+i)%len(pool)]
		}
		wg.Add(k)
		if err := pub.PublishAsync(ctx, it.Code, done, batch...); err != nil {
			return err
		}
	}
	wg.Wait()
	wall := time.Since(t0)
	after := resourceUsage()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d events failed", f)
	}
	user, sys := after.user-before.user, after.sys-before.sys
	fmt.Fprintf(out, "  published and acknowledged              %10.0f events/s  %6.1f MB/s  (%d events in %s)\n",
		float64(events)/wall.Seconds(), float64(bytes.Load())/wall.Seconds()/1e6, events, wall.Round(time.Millisecond))
	fmt.Fprintf(out, "  CPU (publisher and brokers together)    user %.2fs  sys %.2fs  = %.2f cores busy, %.1f µs CPU per event\n",
		user.Seconds(), sys.Seconds(), (user+sys).Seconds()/wall.Seconds(), float64((user+sys).Microseconds())/float64(events))
	fmt.Fprintf(out, "  peak RSS                                %10.0f MiB\n", float64(after.maxRSS)/1024)
	return nil
}

type rusage struct {
	user, sys time.Duration
	maxRSS    int64 // KiB
}

func resourceUsage() rusage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return rusage{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), ru.Maxrss}
}
