package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

const demoDesc = `Starts everything 'jutong dev' starts, on a fresh data directory and fresh
databases, applies the catalog (one topic per item), then plays every source
department: it publishes --events synthetic changes spread over all catalog items
(valid USCCs and citizen IDs, creates, updates and deletes; items updated in real
time get more), waits until PostgreSQL and ClickHouse caught up, and prints a
summary per item and in total, with the commands to look at the data. It keeps
serving until Ctrl-C, or exits after the summary with --exit.`

// Run runs `jutong demo`.
func Run(ctx context.Context, args []string, out, errOut io.Writer) (err error) {
	fs := cmdflag.New("demo", demoDesc, errOut)
	var s stack.Flags
	s.Register(fs, filepath.Join(".jutong", "demo"))
	events := fs.Int("events", 100000, "how many change events to publish")
	exit := fs.Bool("exit", false, "exit after the summary instead of serving until Ctrl-C")
	seed := fs.Uint64("seed", 0, "random seed of the synthetic departments (0: a new one each run)")
	invalid := fs.Int("invalid-every", 200, "also publish one corrupted record (a wrong check character, a blank field) every N events, which the door refuses; 0: none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *events < 1 {
		return fmt.Errorf("--events must be at least 1")
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	s.Apply = true // the demo's departments publish to every item at once
	log := cmdflag.Logger(errOut, s.Verbose)
	// A demo starts from nothing: its own Kafka log and databases.
	if err := os.RemoveAll(filepath.Join(s.DataDir, "kafka")); err != nil {
		return err
	}
	fmt.Fprintf(out, "Starting Jutong (data under %s)...\n", s.DataDir)
	start := time.Now()
	st, err := stack.Start(ctx, &s, "jutong_demo", true, log)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Started in %s.\n", time.Since(start).Round(time.Millisecond))

	d := &run{st: st, out: out, events: *events, seed: *seed, invalid: *invalid}
	defer func() {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil // stopped by a signal, not failed
		}
		d.close()
		err = errors.Join(err, stack.StopWithin(out, s.ShutdownTimeout, st.Close))
	}()
	if err := d.play(ctx); err != nil {
		return err
	}
	if err := d.summary(ctx); err != nil {
		return err
	}
	if err := demoSubscribers(ctx, out, st); err != nil {
		return err
	}
	if err := demoAnalyst(ctx, out, st); err != nil {
		return err
	}
	if err := demoOpen(ctx, out, st); err != nil {
		return err
	}
	if err := demoDispute(ctx, out, st); err != nil {
		return err
	}
	audit := st.ClickHouseClient("--query", "SELECT department, item, grant, sum(records) FROM audit WHERE kind = 'read' GROUP BY department, item, grant")
	fmt.Fprintf(out, "  who read what, under which grant (audit):\n  %s\n", shellQuote(audit))
	if *exit {
		fmt.Fprintln(out, "\n--exit: stopping (the local databases stop with the demo; their files stay under "+s.DataDir+").")
		return nil
	}
	fmt.Fprintln(out, "\nServing until Ctrl-C.")
	select {
	case <-ctx.Done():
		return nil
	case err := <-st.Bus.Errors():
		return err
	}
}

// run is one demo: the synthetic departments and what they published.
type run struct {
	st                  *stack.Stack
	out                 io.Writer
	events, invalid     int
	seed                uint64
	pubs                map[string]*producers.Publisher // by source department
	gens                []*synth.Generator              // one per catalog item
	published           []int                           // events per item
	corrupted           int
	refused             atomic.Int64
	publishTime, landed time.Duration
}

func (d *run) close() {
	for _, p := range d.pubs {
		p.Close()
	}
}

// play makes every source department publish its own items (one publisher
// each), the corrupted records half through the SDK and half through the
// gateway, and waits until both sinks caught up.
func (d *run) play(ctx context.Context) error {
	cat := d.st.Catalog
	d.pubs = map[string]*producers.Publisher{}
	for _, it := range cat.Items {
		if d.pubs[it.Source] != nil {
			continue
		}
		pub, err := producers.New(ctx, cat, it.Source, d.st.Bus.Conn(it.Source), producers.System(it.Source+"-system"), producers.Adapter("demo"), producers.Metrics(d.st.Bus.Metrics))
		if err != nil {
			return err
		}
		d.pubs[it.Source] = pub
	}
	// Items updated in real time get more events than yearly ones.
	weight := map[string]int{"realtime": 8, "daily": 4, "weekly": 2, "monthly": 2}
	var wheel []int
	for i, it := range cat.Items {
		d.gens = append(d.gens, synth.New(it, d.seed+uint64(i), time.Now()))
		for w := max(1, weight[it.UpdateFrequency]); w > 0; w-- {
			wheel = append(wheel, i)
		}
	}
	fmt.Fprintf(d.out, "Publishing %d change events over %d items from %d departments...\n", d.events, len(cat.Items), len(d.pubs))
	t0 := time.Now()
	viaGateway, err := d.publish(ctx, wheel)
	if err != nil {
		return err
	}
	// Some departments' systems post over HTTP: their corrupted records go
	// through the gateway, which refuses and quarantines them the same way.
	for i, evs := range viaGateway {
		if len(evs) == 0 {
			continue
		}
		n, err := postToGateway(ctx, d.st.Bus.HTTPClient(), d.st.Bus.APIURL(), d.st.Bus.Tokens[d.gens[i].Item().Source], d.gens[i].Item(), evs)
		if err != nil {
			return err
		}
		d.refused.Add(int64(n))
	}
	d.publishTime = time.Since(t0)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := d.st.Bus.WaitCaughtUp(wctx); err != nil {
		return err
	}
	d.landed = time.Since(t0)
	return nil
}

// publish publishes the events through the SDK, picking items from wheel,
// and returns the corrupted records meant for the gateway, by item.
func (d *run) publish(ctx context.Context, wheel []int) ([][]*schemas.Event, error) {
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	done := func(r producers.Result) {
		var v *rules.Violation
		switch {
		case errors.As(r.Err, &v):
			d.refused.Add(1) // kept in the quarantine topic
		case r.Err != nil:
			failed.Add(1)
			once.Do(func() { firstErr = r.Err })
		}
		wg.Done()
	}
	viaGateway := make([][]*schemas.Event, len(d.gens))
	d.published = make([]int, len(d.gens))
	pending := make([][]*schemas.Event, len(d.gens))
	flush := func(i int) error {
		if err := ctx.Err(); err != nil {
			return err // stopped: generate no more
		}
		if len(pending[i]) == 0 {
			return nil
		}
		it := d.gens[i].Item()
		wg.Add(len(pending[i]))
		err := d.pubs[it.Source].PublishAsync(ctx, it.Code, done, pending[i]...)
		pending[i] = nil
		return err
	}
	pick := rand.New(rand.NewPCG(d.seed, 1))
	for n := 0; n < d.events; n++ {
		i := wheel[pick.IntN(len(wheel))]
		ev := d.gens[i].Next()
		pending[i] = append(pending[i], ev)
		d.published[i]++
		if d.invalid > 0 && n%d.invalid == d.invalid-1 {
			if bad := d.gens[i].Corrupt(ev); bad != nil {
				if d.corrupted%2 == 0 {
					pending[i] = append(pending[i], bad) // through the SDK
				} else {
					viaGateway[i] = append(viaGateway[i], bad) // through the HTTP gateway
				}
				d.corrupted++
			}
		}
		if len(pending[i]) == 2000 {
			if err := flush(i); err != nil {
				return nil, err
			}
		}
	}
	for i := range pending {
		if err := flush(i); err != nil {
			return nil, err
		}
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return nil, fmt.Errorf("%d events were not published; first error: %v", f, firstErr)
	}
	return viaGateway, nil
}

// summary prints what landed per item and in total, and the commands to
// look at the data, which it runs once; it fails when the sinks do not hold
// what was published.
func (d *run) summary(ctx context.Context) error {
	st, out := d.st, d.out
	chByItem, chEvents, err := d.clickhouseCounts(ctx)
	if err != nil {
		return err
	}
	var pgRows, live int64
	fmt.Fprintf(out, "\nPer item\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ITEM\tSOURCE\tEVENTS\tLIVE KEYS\tPOSTGRESQL ROWS\tCLICKHOUSE EVENTS")
	for i, g := range d.gens {
		it := g.Item()
		pg := "-"
		if (pgsink.Config{Themes: st.Catalog.Themes}).Holds(it) {
			dom, n := it.Namespace()
			var c int64
			if err := st.PGPool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{dom, n}.Sanitize()).Scan(&c); err != nil {
				return err
			}
			pg = fmt.Sprint(c)
			pgRows += c
			live += int64(g.Live())
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%d\n", it.Code, it.Source, d.published[i], g.Live(), pg, chByItem[it.Topic()])
	}
	tw.Flush()
	check := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISMATCH"
	}
	fmt.Fprintf(out, "\nSummary\n")
	fmt.Fprintf(out, "  events published         %d in %s (%.0f events/s)\n", d.events, d.publishTime.Round(time.Millisecond), float64(d.events)/d.publishTime.Seconds())
	fmt.Fprintf(out, "  landed in both sinks     after %s (%.0f events/s end to end)\n", d.landed.Round(time.Millisecond), float64(d.events)/d.landed.Seconds())
	fmt.Fprintf(out, "  PostgreSQL rows          %d (distinct live keys of the items in base and theme databases: %d) %s\n", pgRows, live, check(pgRows == live))
	fmt.Fprintf(out, "  ClickHouse events        %d (events published: %d) %s\n", chEvents, d.events, check(chEvents == uint64(d.events)))
	fmt.Fprintf(out, "  refused at the door      %d of %d corrupted records, half sent through the HTTP gateway (kept in _jutong.quarantine, table rejects)\n", d.refused.Load(), d.corrupted)
	fmt.Fprintf(out, "\nWhere to look\n")
	st.Describe(out)
	if err := d.lookCommands(ctx); err != nil {
		return err
	}
	if pgRows != live || chEvents != uint64(d.events) {
		return fmt.Errorf("the sinks do not hold what was published")
	}
	return nil
}

// clickhouseCounts counts the events in ClickHouse, by item and in all.
func (d *run) clickhouseCounts(ctx context.Context) (map[string]uint64, uint64, error) {
	byItem := map[string]uint64{}
	rows, err := d.st.CHConn.Query(ctx, "SELECT item, count() FROM events GROUP BY item")
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var all uint64
	for rows.Next() {
		var item string
		var n uint64
		if err := rows.Scan(&item, &n); err != nil {
			return nil, 0, err
		}
		byItem[item] = n
		all += n
	}
	return byItem, all, rows.Err()
}

// lookCommands prints the psql and clickhouse-client commands to look at
// the data, and runs each whose client is installed.
func (d *run) lookCommands(ctx context.Context) error {
	st, out := d.st, d.out
	psql, pgEnv := st.PSQL("-c", "SELECT uscc, name, legal_representative, registered_capital, established_on, status FROM legal_person.enterprise_registration LIMIT 5")
	chc := st.ClickHouseClient("--query",
		"SELECT source_department, count() AS events, countIf(op = 'DELETE') AS deletes, round(avg(landed_time_ms - publish_time_ms)) AS avg_landing_ms FROM events GROUP BY source_department ORDER BY events DESC")
	score := st.ClickHouseClient("--format", "PrettyCompactNoEscapes", "--query",
		"SELECT department, accepted, rejected, reject_rate FROM scorecard_reject_rate ORDER BY department")
	fmt.Fprintf(out, "\n  %s %s\n  %s\n  %s\n", pgEnv, shellQuote(psql), shellQuote(chc), shellQuote(score))
	// The quarantine reaches ClickHouse's rejects table on its own copy.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var n uint64
		if err := st.CHConn.QueryRow(ctx, "SELECT count() FROM rejects").Scan(&n); err == nil && int64(n) >= d.refused.Load() {
			break
		}
	}
	for _, c := range [][]string{psql, chc, score} {
		if _, err := exec.LookPath(c[0]); err != nil {
			continue
		}
		cmd := exec.CommandContext(ctx, c[0], c[1:]...)
		cmd.Env = append(os.Environ(), pgEnv)
		res, err := cmd.CombinedOutput()
		fmt.Fprintf(out, "\n$ %s\n%s", c[0]+" ...", res)
		if err != nil {
			return fmt.Errorf("%s: %v", c[0], err)
		}
	}
	return nil
}

// postToGateway posts events as NDJSON to the ingest gateway and returns
// how many it refused.
func postToGateway(ctx context.Context, hc *http.Client, api, token string, it *catalog.Item, evs []*schemas.Event) (int, error) {
	var body bytes.Buffer
	for _, e := range evs {
		data := map[string]any{}
		for k, v := range e.Data {
			data[k] = schemas.PortableValue(it.Field(k), v)
		}
		line, _ := json.Marshal(map[string]any{"event_id": e.ID, "op": e.Op, "key": e.Key,
			"event_time": e.EventTime.Format(time.RFC3339Nano), "data": data})
		body.Write(append(line, '\n'))
	}
	req, err := http.NewRequestWithContext(ctx, "POST", api+"/v1/items/"+it.Code+"/events", &body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct{ Rejected int }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("gateway: %s: %w", resp.Status, err)
	}
	return r.Rejected, nil
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " '\"*?(),;<>$&|") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}
