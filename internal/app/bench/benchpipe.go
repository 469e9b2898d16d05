package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/procstat"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// benchPipeline measures the whole bus: publishers -> embedded Kafka ->
// pipelines -> PostgreSQL (base database) and ClickHouse, exactly once.
func benchPipeline(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("bench pipeline", benchDesc, errOut)
	events := fs.Int("events", 500_000, "events for the throughput run (one update per three creates)")
	item := fs.String("item", "legal_person.enterprise_registration", "the catalog item (the default has 15 fields)")
	rate := fs.Int("rate", 30_000, "events/s for the latency run")
	duration := fs.Duration("duration", 10*time.Second, "length of the latency run")
	var sf stackFlags
	sf.register(fs)
	profile := fs.String("cpuprofile", "", "write a CPU profile of the throughput run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, done, err := sf.start(ctx, errOut, nil)
	if err != nil {
		return err
	}
	defer done()
	it := st.Catalog.Item(*item)
	if it == nil {
		return fmt.Errorf("no catalog item %q", *item)
	}
	if it.Base == "" {
		return fmt.Errorf("%s is in no base database", it.Code)
	}
	dept := st.Catalog.Department(it.Source)
	// The publishers' goroutines (the client's included) carry their stage
	// label, so that the profile tells their CPU from the bus's.
	pctx := pprof.WithLabels(ctx, pprof.Labels(bus.StageLabel, "publishers"))
	pprof.SetGoroutineLabels(pctx)
	pub, err := producers.New(ctx, st.Catalog, it.Source, connect.Config{Brokers: st.Bus.Kafka().Brokers, User: dept.Principal, Password: st.Bus.Credentials[dept.Principal], Registry: st.Bus.RegistryURL()})
	pprof.SetGoroutineLabels(ctx)
	if err != nil {
		return err
	}
	defer pub.Close()
	g := synth.New(it, 3, time.Now())
	g.UpdateEvery, g.DeleteEvery = 4, 0 // one update per three creates
	fmt.Fprintf(out, "jutong bench pipeline: %s (%d fields), 3 embedded brokers, %d partitions, PostgreSQL + ClickHouse, GOMAXPROCS %d\n",
		it.Code, len(it.Fields), st.Catalog.TopicConfig(it).Partitions, runtime.GOMAXPROCS(0))
	p := &pipe{st: st, out: out, it: it, pub: pub, gen: g, bp: sf.bp, pctx: pctx}
	if err := p.throughput(ctx, *events, *profile); err != nil {
		return err
	}
	latEvents, err := p.latency(ctx, *rate, *duration)
	if err != nil {
		return err
	}
	return p.exactlyOnce(ctx, *events+latEvents)
}

// stackFlags are the settings of the benchmarks that start a whole stack.
type stackFlags struct {
	pgDSN, chDSN string
	decodeCache  int
	verbose      bool
	dbRoles      bool
	authority    bool
	// brokersProc runs the brokers in a process of their own (bp, once started).
	brokersProc bool
	bp          *brokersProcess
}

func (f *stackFlags) register(fs *cmdflag.FlagSet) {
	fs.EnvStringVar(&f.pgDSN, "postgres-dsn", "JUTONG_POSTGRES_DSN", "", "PostgreSQL; empty starts a throwaway local server")
	fs.EnvStringVar(&f.chDSN, "clickhouse-dsn", "JUTONG_CLICKHOUSE_DSN", "", "ClickHouse; empty starts a throwaway local server")
	fs.IntVar(&f.decodeCache, "decode-cache", 0, "decoded events the masked copies and the door share (0: none, as serve's default; the PostgreSQL, ClickHouse and feed sinks decode into columns of their own)")
	fs.BoolVar(&f.verbose, "v", false, "log progress (info level) to stderr")
	fs.BoolVar(&f.dbRoles, "database-roles", true, "keep the departments' database logins and their masked copies of their grants")
	fs.BoolVar(&f.brokersProc, "brokers-process", false, "run the 3 embedded brokers in a process of their own (jutong bench brokers), as a deployment runs Kafka apart: the bus's CPU is then the bus's, the brokers' is printed apart")
	fs.BoolVar(&f.authority, "authority-analysts", false, "also the data authority's analysts' database, a masked copy of every item (dev and serve --authority-analysts)")
}

// start starts a stack (3 embedded brokers, the catalog applied, fresh
// databases, plaintext) in a temporary directory; done stops and removes it.
func (f *stackFlags) start(ctx context.Context, errOut io.Writer, adjust func(*stack.Flags)) (*stack.Stack, func(), error) {
	dir, err := os.MkdirTemp("", "jutong-bench-")
	if err != nil {
		return nil, nil, err
	}
	flags := &stack.Flags{Apply: true, DataDir: dir, Brokers: 3, KafkaPorts: "0,0,0",
		RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", AdminUser: "jutong", AdminPassword: "bench",
		PostgresDSN: f.pgDSN, ClickHouseDSN: f.chDSN, DecodeCache: f.decodeCache, NoDatabaseRoles: !f.dbRoles, AuthorityAnalysts: f.authority, AuthorityAnalystGrade: 2}
	if adjust != nil {
		adjust(flags)
	}
	if f.brokersProc {
		if f.bp, err = startBrokers(ctx, flags.Brokers, flags.AdminUser, flags.AdminPassword, errOut); err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		flags.Kafka = &f.bp.Kafka
	}
	stopBrokers := func() {
		if f.bp != nil {
			f.bp.Stop()
		}
	}
	st, err := stack.Start(ctx, flags, "jutong_bench", true, cmdflag.Logger(errOut, f.verbose))
	if err != nil {
		stopBrokers()
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return st, func() { _ = st.Close(context.Background()); stopBrokers(); os.RemoveAll(dir) }, nil
}

// pipe is one run of bench pipeline.
type pipe struct {
	st     *stack.Stack
	out    io.Writer
	it     *catalog.Item
	pub    *producers.Publisher
	gen    *synth.Generator
	bp     *brokersProcess // nil: the brokers run in this process
	pctx   context.Context // labelled as the publishers' stage
	failed atomic.Int64
	wg     sync.WaitGroup
}

// publish publishes n fresh events without waiting.
func (p *pipe) publish(ctx context.Context, n int) error {
	batch := make([]*schemas.Event, n)
	for i := range batch {
		batch[i] = p.gen.Next()
	}
	p.wg.Add(len(batch))
	return p.pub.PublishAsync(ctx, p.it.Code, func(r producers.Result) {
		if r.Err != nil {
			p.failed.Add(1)
		}
		p.wg.Done()
	}, batch...)
}

// watch is what follow saw of the sinks' ledgers: when each caught up, and
// the largest lag.
type watch struct {
	caughtUp map[string]time.Duration
	maxLag   map[string]int64
}

// follow watches the sinks until each caught up after until() said the
// publishing is over.
func (p *pipe) follow(ctx context.Context, start time.Time, until func() bool) (watch, error) {
	w := watch{caughtUp: map[string]time.Duration{}, maxLag: map[string]int64{}}
	for {
		lag, err := p.st.Bus.Lag(ctx)
		if err != nil {
			lag = nil // the sinks are still preparing their ledgers
		}
		finished := until()
		all := len(lag) > 0
		for s, l := range lag {
			w.maxLag[s] = max(w.maxLag[s], l)
			if l == 0 && finished {
				if _, ok := w.caughtUp[s]; !ok {
					w.caughtUp[s] = time.Since(start)
				}
			}
			_, ok := w.caughtUp[s]
			all = all && ok
		}
		if all {
			return w, nil
		}
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// throughput publishes events as fast as the door lets it and times the
// landing. The events are made as they are published (made beforehand, they
// would take gigabytes): the generator's CPU is in this process's, and the
// CPU by stage tells it apart (the publishers' stage).
func (p *pipe) throughput(ctx context.Context, events int, profile string) error {
	sp, err := startStageProfile(profile)
	if err != nil {
		return err
	}
	stopProfile := sync.OnceValues(sp.stop)
	defer stopProfile() //nolint:errcheck // on an early return only
	before := resourceUsage()
	pg0, ch0, k0 := procstat.Tree(p.st.PG.Pid()), procstat.Tree(p.st.CH.Pid()), p.brokersCPU()
	stages0 := stageSeconds(p.st.Bus.Metrics)
	start := time.Now()
	var published atomic.Bool
	go pprof.Do(p.pctx, pprof.Labels(), func(context.Context) {
		for sent := 0; sent < events; sent += 2000 {
			if err := p.publish(ctx, min(2000, events-sent)); err != nil {
				p.failed.Add(1)
				break
			}
		}
		p.wg.Wait()
		published.Store(true)
	})
	w, err := p.follow(ctx, start, published.Load)
	if err != nil {
		return err
	}
	pubTime := time.Since(start)
	after := resourceUsage()
	stageCPU, err := stopProfile()
	if err != nil {
		return err
	}
	if f := p.failed.Load(); f > 0 {
		return fmt.Errorf("%d events failed to publish", f)
	}
	fmt.Fprintf(p.out, "\nThroughput: %d events, published as fast as possible\n", events)
	for _, s := range []string{pgsink.Kind, chsink.Kind} {
		fmt.Fprintf(p.out, "  landed in %-10s  %10.0f events/s  (all %d in %s; max lag %d)\n", s,
			float64(events)/w.caughtUp[s].Seconds(), events, w.caughtUp[s].Round(time.Millisecond), w.maxLag[s])
	}
	wall := max(w.caughtUp[pgsink.Kind], w.caughtUp[chsink.Kind], pubTime)
	user, sys := after.user-before.user, after.sys-before.sys
	fmt.Fprintf(p.out, "  CPU of this process (%s): user %.1fs sys %.1fs = %.2f cores\n",
		p.inProcess(), user.Seconds(), sys.Seconds(), (user+sys).Seconds()/wall.Seconds())
	if p.bp != nil {
		k := p.brokersCPU() - k0
		fmt.Fprintf(p.out, "  CPU of the brokers' process: %.1fs = %.2f cores\n", k.Seconds(), k.Seconds()/wall.Seconds())
	}
	if c, ok := serverCPU(p.st); ok {
		fmt.Fprintf(p.out, "  CPU of the database servers: %s\n", c)
		p.perEvents(events, user+sys, p.brokersCPU()-k0, procstat.Tree(p.st.PG.Pid())-pg0, procstat.Tree(p.st.CH.Pid())-ch0, "")
	}
	printStageCPU(p.out, stageCPU, events)
	printStages(p.out, stages0, stageSeconds(p.st.Bus.Metrics), wall)
	return nil
}

// latency publishes at a steady rate for duration and reads the
// publish-to-landed times from the sinks; it returns the events published.
func (p *pipe) latency(ctx context.Context, rate int, duration time.Duration) (int, error) {
	d, n := p.it.Namespace()
	before := resourceUsage()
	pg0, ch0, k0 := procstat.Tree(p.st.PG.Pid()), procstat.Tree(p.st.CH.Pid()), p.brokersCPU()
	latStart := time.Now()
	tick := 10 * time.Millisecond
	perTick := max(1, rate/100)
	var stop atomic.Bool
	latEvents := 0
	go pprof.Do(p.pctx, pprof.Labels(), func(context.Context) {
		t := time.NewTicker(tick)
		defer t.Stop()
		for end := latStart.Add(duration); time.Now().Before(end); <-t.C {
			if err := p.publish(ctx, perTick); err != nil {
				p.failed.Add(1)
				break
			}
			latEvents += perTick
		}
		p.wg.Wait()
		stop.Store(true)
	})
	w, err := p.follow(ctx, latStart, stop.Load)
	if err != nil {
		return 0, err
	}
	var pg50, pg99 float64
	if err := p.st.PGPool.QueryRow(ctx, fmt.Sprintf(`SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM _landed_at - _publish_time)),
		percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM _landed_at - _publish_time)) FROM %q.%q WHERE _publish_time >= $1`, d, n), latStart).Scan(&pg50, &pg99); err != nil {
		return 0, err
	}
	var chq []float64
	if err := p.st.CHConn.QueryRow(ctx, `SELECT quantilesExact(0.5, 0.99)(toFloat64(landed_time_ms - publish_time_ms) / 1000) FROM events WHERE item = ? AND publish_time_ms >= ?`,
		p.it.Topic(), latStart.UnixMilli()).Scan(&chq); err != nil {
		return 0, err
	}
	fmt.Fprintf(p.out, "\nLatency: %d events at %d events/s for %s, publish time -> landed (the start of the sink's write)\n", latEvents, rate, duration)
	fmt.Fprintf(p.out, "  postgres     p50 %6.0f ms   p99 %6.0f ms   max lag %d\n", pg50*1000, pg99*1000, w.maxLag[pgsink.Kind])
	fmt.Fprintf(p.out, "  clickhouse   p50 %6.0f ms   p99 %6.0f ms   max lag %d\n", chq[0]*1000, chq[1]*1000, w.maxLag[chsink.Kind])
	if latEvents > 0 {
		after := resourceUsage()
		p.perEvents(latEvents, after.user+after.sys-before.user-before.sys, p.brokersCPU()-k0,
			procstat.Tree(p.st.PG.Pid())-pg0, procstat.Tree(p.st.CH.Pid())-ch0, " at this rate")
	}
	return latEvents, nil
}

// inProcess says what runs in the bench's process.
func (p *pipe) inProcess() string {
	if p.bp != nil {
		return "publishers, door, pipelines; brokers apart"
	}
	return "publishers, brokers, door, pipelines"
}

// brokersCPU is the CPU the brokers' process used so far (0: no such process).
func (p *pipe) brokersCPU() time.Duration {
	if p.bp == nil {
		return 0
	}
	return procstat.Tree(p.bp.Pid())
}

// perEvents prints CPU-s per 100,000 events, per process.
func (p *pipe) perEvents(events int, bus, brokers, pg, ch time.Duration, what string) {
	per := func(d time.Duration) float64 { return d.Seconds() * 100_000 / float64(events) }
	brokersPart := ""
	if p.bp != nil {
		brokersPart = fmt.Sprintf(", brokers %.2f", per(brokers))
	}
	fmt.Fprintf(p.out, "  CPU-s per 100,000 events%s: bus process %.2f%s, PostgreSQL %.2f, ClickHouse %.2f\n",
		what, per(bus), brokersPart, per(pg), per(ch))
}

// exactlyOnce checks that the sinks hold what was published, no more.
func (p *pipe) exactlyOnce(ctx context.Context, total int) error {
	d, n := p.it.Namespace()
	var rows int64
	if err := p.st.PGPool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %q.%q`, d, n)).Scan(&rows); err != nil {
		return err
	}
	var evs uint64
	if err := p.st.CHConn.QueryRow(ctx, `SELECT count() FROM events WHERE item = ?`, p.it.Topic()).Scan(&evs); err != nil {
		return err
	}
	fmt.Fprintf(p.out, "\nExactly once: PostgreSQL %d rows (%d live keys), ClickHouse %d events (%d published)\n", rows, p.gen.Live(), evs, total)
	if rows != int64(p.gen.Live()) || evs != uint64(total) {
		return fmt.Errorf("the sinks do not hold what was published")
	}
	fmt.Fprintf(p.out, "Peak RSS of this process: %.0f MiB\n", float64(resourceUsage().maxRSS)/1024)
	if shared, decoded := decodeCounts(p.st.Bus.Metrics); shared+decoded > 0 {
		fmt.Fprintf(p.out, "Sinks' decodes: %.0f decoded, %.0f shared (%.0f%%, pipeline.DecodeCache)\n", decoded, shared, 100*shared/(shared+decoded))
	}
	return nil
}

// decodeCounts sums jutong_sink_decodes_total by how.
func decodeCounts(g prometheus.Gatherer) (shared, decoded float64) {
	eachCounter(g, "jutong_sink_decodes_total", func(l map[string]string, v float64) {
		switch l["how"] {
		case "shared":
			shared += v
		case "decoded":
			decoded += v
		}
	})
	return shared, decoded
}

// eachCounter calls fn with the labels and value of each series of the
// counter named name.
func eachCounter(g prometheus.Gatherer, name string, fn func(labels map[string]string, v float64)) {
	mfs, err := g.Gather()
	if err != nil {
		return
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			fn(labels, m.GetCounter().GetValue())
		}
	}
}

// serverCPU reads the CPU time the local database servers used, when this
// process started them.
func serverCPU(st *stack.Stack) (string, bool) {
	pg, ch := st.PG.Pid(), st.CH.Pid()
	if pg == 0 || ch == 0 {
		return "", false
	}
	return fmt.Sprintf("PostgreSQL %.1fs, ClickHouse %.1fs (since they started)", procstat.Tree(pg).Seconds(), procstat.Tree(ch).Seconds()), true
}

// stageSeconds reads jutong_stage_seconds_total: stage -> phase -> seconds.
func stageSeconds(g prometheus.Gatherer) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	eachCounter(g, "jutong_stage_seconds_total", func(l map[string]string, v float64) {
		if out[l["stage"]] == nil {
			out[l["stage"]] = map[string]float64{}
		}
		out[l["stage"]][l["phase"]] += v
	})
	return out
}

// printStages prints each stage's phases between two readings as shares of
// wall: what its goroutine was doing (working: decide, decode, write;
// waiting: poll, produce, commit).
func printStages(w io.Writer, before, after map[string]map[string]float64, wall time.Duration) {
	stages := slices.Sorted(maps.Keys(after))
	if len(stages) == 0 {
		return
	}
	fmt.Fprintf(w, "  stages, share of the run's %s (working: decide, decode, write; waiting: poll for records, produce and commit for the brokers):\n", wall.Round(time.Millisecond))
	for _, st := range stages {
		if !strings.HasPrefix(st, "door") && !strings.HasPrefix(st, "sink.postgres") && !strings.HasPrefix(st, "sink.clickhouse") {
			continue
		}
		var parts []string
		for _, ph := range []string{"decide", "decode", "write", "produce", "commit", "poll"} {
			if v, ok := after[st][ph]; ok {
				parts = append(parts, fmt.Sprintf("%s %3.0f%%", ph, 100*(v-before[st][ph])/wall.Seconds()))
			}
		}
		fmt.Fprintf(w, "    %-16s %s\n", st, strings.Join(parts, "   "))
	}
}
