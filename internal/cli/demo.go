package cli

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

	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/producers/contract"
	"github.com/jutong/jutong/schemas"
)

const demoDesc = `Starts everything 'jutong dev' starts, on a fresh data directory and fresh
databases, applies the catalog (one topic per item), then plays every source
department: it publishes --events synthetic changes spread over all catalog items
(valid USCCs and citizen IDs, creates, updates and deletes; items updated in real
time get more), waits until PostgreSQL and ClickHouse caught up, and prints a
summary per item and in total, with the commands to look at the data. It keeps
serving until Ctrl-C, or exits after the summary with --exit.`

func runDemo(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := newFlags("demo", demoDesc, errOut)
	var s stackFlags
	s.register(fs, filepath.Join(".jutong", "demo"))
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
	s.apply = true // the demo's departments publish to every item at once
	log := newLogger(errOut, s.verbose)
	// A demo starts from nothing: its own Kafka log and databases.
	if err := os.RemoveAll(filepath.Join(s.dataDir, "kafka")); err != nil {
		return err
	}
	fmt.Fprintf(out, "Starting Jutong (data under %s)...\n", s.dataDir)
	start := time.Now()
	st, err := startStack(ctx, &s, "jutong_demo", true, log)
	if err != nil {
		return err
	}
	defer st.close()
	fmt.Fprintf(out, "Started in %s.\n", time.Since(start).Round(time.Millisecond))

	cat := st.cat
	k := st.bus.Kafka()
	// Every source department publishes its own items: one publisher each.
	pubs := map[string]*producers.Publisher{}
	for _, it := range cat.Items {
		if pubs[it.Source] != nil {
			continue
		}
		principal := cat.Department(it.Source).Principal
		pub, err := producers.New(ctx, cat, it.Source,
			producers.Brokers(k.Brokers...), producers.SASL(principal, st.bus.Credentials[principal]),
			producers.Registry(st.bus.RegistryURL()), producers.System(it.Source+"-system"), producers.Adapter("demo"),
			producers.Metrics(st.bus.Metrics))
		if err != nil {
			return err
		}
		defer pub.Close()
		pubs[it.Source] = pub
	}
	// Items updated in real time get more events than yearly ones.
	weight := map[string]int{"realtime": 8, "daily": 4, "weekly": 2, "monthly": 2}
	var gens []*synth.Generator
	var wheel []int
	for i, it := range cat.Items {
		gens = append(gens, synth.New(it, *seed+uint64(i), time.Now()))
		for w := max(1, weight[it.UpdateFrequency]); w > 0; w-- {
			wheel = append(wheel, i)
		}
	}
	fmt.Fprintf(out, "Publishing %d change events over %d items from %d departments...\n", *events, len(cat.Items), len(pubs))
	var failed, refused atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	done := func(r producers.Result) {
		var v *contract.Violation
		switch {
		case errors.As(r.Err, &v):
			refused.Add(1) // kept in the quarantine topic
		case r.Err != nil:
			failed.Add(1)
			once.Do(func() { firstErr = r.Err })
		}
		wg.Done()
	}
	corrupted := 0
	viaGateway := make([][]*schemas.Event, len(gens))
	published := make([]int, len(gens))
	pending := make([][]*schemas.Event, len(gens))
	flush := func(i int) error {
		if len(pending[i]) == 0 {
			return nil
		}
		it := gens[i].Item()
		wg.Add(len(pending[i]))
		err := pubs[it.Source].PublishAsync(ctx, it.Code, done, pending[i]...)
		pending[i] = nil
		return err
	}
	pick := rand.New(rand.NewPCG(*seed, 1))
	t0 := time.Now()
	for n := 0; n < *events; n++ {
		i := wheel[pick.IntN(len(wheel))]
		ev := gens[i].Next()
		pending[i] = append(pending[i], ev)
		published[i]++
		if *invalid > 0 && n%*invalid == *invalid-1 {
			if bad := gens[i].Corrupt(ev); bad != nil {
				if corrupted%2 == 0 {
					pending[i] = append(pending[i], bad) // through the SDK
				} else {
					viaGateway[i] = append(viaGateway[i], bad) // through the HTTP gateway
				}
				corrupted++
			}
		}
		if len(pending[i]) == 2000 {
			if err := flush(i); err != nil {
				return err
			}
		}
	}
	for i := range pending {
		if err := flush(i); err != nil {
			return err
		}
	}
	wg.Wait()
	// Some departments' systems post over HTTP: their corrupted records go
	// through the gateway, which refuses and quarantines them the same way.
	for i, evs := range viaGateway {
		if len(evs) == 0 {
			continue
		}
		n, err := postToGateway(ctx, st.bus.APIURL(), st.bus.Tokens[gens[i].Item().Source], gens[i].Item(), evs)
		if err != nil {
			return err
		}
		refused.Add(int64(n))
	}
	publishTime := time.Since(t0)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d events were not published; first error: %v", f, firstErr)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := st.bus.WaitCaughtUp(wctx); err != nil {
		return err
	}
	landed := time.Since(t0)

	chByItem := map[string]uint64{}
	rows, err := st.chConn.Query(ctx, "SELECT item, count() FROM events GROUP BY item")
	if err != nil {
		return err
	}
	var chEvents uint64
	for rows.Next() {
		var item string
		var n uint64
		if err := rows.Scan(&item, &n); err != nil {
			return err
		}
		chByItem[item] = n
		chEvents += n
	}
	rows.Close()
	var pgRows, live int64
	fmt.Fprintf(out, "\nPer item\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ITEM\tSOURCE\tEVENTS\tLIVE KEYS\tPOSTGRESQL ROWS\tCLICKHOUSE EVENTS")
	for i, g := range gens {
		it := g.Item()
		pg := "-"
		if (pgsink.Config{Themes: st.cat.Themes}).Holds(it) {
			d, n := it.Namespace()
			var c int64
			if err := st.pgPool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{d, n}.Sanitize()).Scan(&c); err != nil {
				return err
			}
			pg = fmt.Sprint(c)
			pgRows += c
			live += int64(g.Live())
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%d\n", it.Code, it.Source, published[i], g.Live(), pg, chByItem[it.Topic()])
	}
	tw.Flush()
	check := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISMATCH"
	}
	fmt.Fprintf(out, "\nSummary\n")
	fmt.Fprintf(out, "  events published         %d in %s (%.0f events/s)\n", *events, publishTime.Round(time.Millisecond), float64(*events)/publishTime.Seconds())
	fmt.Fprintf(out, "  landed in both sinks     after %s (%.0f events/s end to end)\n", landed.Round(time.Millisecond), float64(*events)/landed.Seconds())
	fmt.Fprintf(out, "  PostgreSQL rows          %d (distinct live keys of the items in base and theme databases: %d) %s\n", pgRows, live, check(pgRows == live))
	fmt.Fprintf(out, "  ClickHouse events        %d (events published: %d) %s\n", chEvents, *events, check(chEvents == uint64(*events)))
	fmt.Fprintf(out, "  refused at the door      %d of %d corrupted records, half sent through the HTTP gateway (kept in _jutong.quarantine, table rejects)\n", refused.Load(), corrupted)
	fmt.Fprintf(out, "\nWhere to look\n")
	st.describe(out)
	psql := []string{"psql", st.pgDSN, "-c", "SELECT uscc, name, legal_representative, registered_capital, established_on, status FROM legal_person.enterprise_registration LIMIT 5"}
	chc := []string{"clickhouse-client", "--host", "127.0.0.1", "--port", st.ch.Port(), "--database", st.chDB, "--query",
		"SELECT source_department, count() AS events, countIf(op = 'DELETE') AS deletes, round(avg(landed_time_ms - publish_time_ms)) AS avg_landing_ms FROM events GROUP BY source_department ORDER BY events DESC"}
	score := []string{"clickhouse-client", "--host", "127.0.0.1", "--port", st.ch.Port(), "--database", st.chDB, "--format", "PrettyCompactNoEscapes", "--query",
		"SELECT department, accepted, rejected, reject_rate FROM scorecard_reject_rate ORDER BY department"}
	fmt.Fprintf(out, "\n  %s\n  %s\n  %s\n", shellQuote(psql), shellQuote(chc), shellQuote(score))
	// The quarantine reaches ClickHouse's rejects table on its own copy.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var n uint64
		if err := st.chConn.QueryRow(ctx, "SELECT count() FROM rejects").Scan(&n); err == nil && int64(n) >= refused.Load() {
			break
		}
	}
	for _, c := range [][]string{psql, chc, score} {
		if _, err := exec.LookPath(c[0]); err != nil {
			continue
		}
		res, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput()
		fmt.Fprintf(out, "\n$ %s\n%s", c[0]+" ...", res)
		if err != nil {
			return fmt.Errorf("%s: %v", c[0], err)
		}
	}
	if pgRows != live || chEvents != uint64(*events) {
		return fmt.Errorf("the sinks do not hold what was published")
	}
	if err := demoSubscribers(ctx, out, st); err != nil {
		return err
	}
	audit := []string{"clickhouse-client", "--host", "127.0.0.1", "--port", st.ch.Port(), "--database", st.chDB, "--query",
		"SELECT department, item, grant, sum(records) FROM audit WHERE kind = 'read' GROUP BY department, item, grant"}
	fmt.Fprintf(out, "  who read what, under which grant (audit):\n  %s\n", shellQuote(audit))
	if *exit {
		fmt.Fprintln(out, "\n--exit: stopping (the local databases stop with the demo; their files stay under "+s.dataDir+").")
		return nil
	}
	fmt.Fprintln(out, "\nServing until Ctrl-C.")
	select {
	case <-ctx.Done():
	case err := <-st.bus.Errors():
		return err
	}
	return nil
}

// postToGateway posts events as NDJSON to the ingest gateway and returns
// how many it refused.
func postToGateway(ctx context.Context, api, token string, it *catalog.Item, evs []*schemas.Event) (int, error) {
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
	resp, err := http.DefaultClient.Do(req)
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
