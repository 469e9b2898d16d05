package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/procstat"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/server/control"
)

const (
	queryResident   = "population.resident_registration"
	queryEnterprise = "legal_person.enterprise_registration"
)

// benchQuery runs `jutong bench query`: lookups by key and by a lookup
// field through the HTTP API, with authentication, the grant check,
// masking, rate limits and the audit on, from concurrent clients in this
// process, against everything on this machine.
func benchQuery(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("bench query", benchDesc, errOut)
	records := fs.Int("records", 100_000, "residents published (and a fifth as many enterprises)")
	clients := fs.Int("clients", 64, "concurrent clients")
	duration := fs.Duration("duration", 10*time.Second, "length of each run (by key, by field)")
	var sf stackFlags
	sf.register(fs)
	profile := fs.String("cpuprofile", "", "write a CPU profile of the runs (this process: the bus and the clients) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, done, err := sf.start(ctx, errOut, func(f *stack.Flags) { f.LookupRate = 1e6 })
	if err != nil {
		return err
	}
	defer done()
	q := &query{st: st, out: out, clients: *clients}
	fmt.Fprintf(out, "jutong bench query: %d residents, %d enterprises; %d clients over HTTP (basic auth, grant, purpose, masking, rate limit, audit on)\n",
		*records, *records/5, *clients)
	// Granted first: health's masked feed follows the load, and is caught
	// up (the process quiet) before anything is measured.
	if err := q.grant(ctx); err != nil {
		return err
	}
	if err := q.load(ctx, *records); err != nil {
		return err
	}
	quiesce(2 * time.Minute)
	stopProfile, err := cpuProfile(*profile)
	if err != nil {
		return err
	}
	defer stopProfile()
	calls := 0
	for i, run := range []struct {
		name string
		url  func(r *rand.Rand) string
	}{
		{"by key (masked grant, grade 2)", func(r *rand.Rand) string {
			return q.base + "/v1/items/" + queryResident + "/records/" + q.residents[r.IntN(len(q.residents))] + "?purpose=" + url.QueryEscape(q.purposes[0])
		}},
		{"by lookup field (legal_representative_id)", func(r *rand.Rand) string {
			return q.base + "/v1/items/" + queryEnterprise + "/records?field=legal_representative_id&limit=10&value=" +
				q.reps[r.IntN(len(q.reps))] + "&purpose=" + url.QueryEscape(q.purposes[1])
		}},
	} {
		n, err := q.run(ctx, run.name, run.url, q.auth[i], *duration)
		if err != nil {
			return err
		}
		calls += n
	}
	if err := q.audited(ctx, calls); err != nil {
		return err
	}
	return q.snapshot(ctx)
}

// quiesce waits, up to max, until this process uses less than a fifth of a
// core over a second (the feeds and copies caught up).
func quiesce(max time.Duration) {
	for deadline := time.Now().Add(max); time.Now().Before(deadline); {
		u0 := resourceUsage()
		time.Sleep(time.Second)
		u1 := resourceUsage()
		if u1.user+u1.sys-u0.user-u0.sys < 200*time.Millisecond {
			return
		}
	}
}

// snapshot streams the residents' current state as health's grant sees it.
func (q *query) snapshot(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, "GET", q.base+"/v1/items/"+queryResident+"/snapshot?purpose="+url.QueryEscape(q.purposes[0]), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(q.auth[0][0], q.auth[0][1])
	cpu0, pg0 := resourceUsage(), procstat.Tree(q.st.PG.Pid())
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines, bytes := 0, 0
	for sc.Scan() {
		lines++
		bytes += len(sc.Bytes()) + 1
	}
	elapsed := time.Since(start)
	cpu1 := resourceUsage()
	rows := lines - 2 // the start and end lines
	fmt.Fprintf(q.out, "  snapshot          %d rows (%.1f MB NDJSON, masked for health) in %s: %.0f rows/s; CPU jutong %.1fs, PostgreSQL %.1fs\n",
		rows, float64(bytes)/1e6, elapsed.Round(time.Millisecond), float64(rows)/elapsed.Seconds(),
		(cpu1.user + cpu1.sys - cpu0.user - cpu0.sys).Seconds(), (procstat.Tree(q.st.PG.Pid()) - pg0).Seconds())
	distinct := map[string]bool{}
	for _, k := range q.residents {
		distinct[k] = true
	}
	if rows != len(distinct) {
		return fmt.Errorf("bench query: the snapshot has %d rows, %d residents were published", rows, len(distinct))
	}
	return sc.Err()
}

// query is one run of bench query.
type query struct {
	st              *stack.Stack
	out             io.Writer
	clients         int
	base            string
	residents, reps []string
	purposes        [2]string    // health's grant's, tax's
	auth            [2][2]string // their principals and passwords
}

// load publishes the residents and the enterprises (whose legal
// representatives are residents) and waits until the sinks have them.
func (q *query) load(ctx context.Context, n int) error {
	start := time.Now()
	for _, code := range []string{queryResident, queryEnterprise} {
		it := q.st.Catalog.Item(code)
		pub, err := producers.New(ctx, q.st.Catalog, it.Source, q.st.Bus.Conn(it.Source))
		if err != nil {
			return err
		}
		g := synth.New(it, 7, time.Now())
		g.UpdateEvery, g.DeleteEvery = 0, 0
		var failed atomic.Int64
		done := func(r producers.Result) {
			if r.Err != nil {
				failed.Add(1)
			}
		}
		count := n
		if code == queryEnterprise {
			count = n / 5
		}
		for i := 0; i < count; i++ {
			e := g.Next()
			if code == queryResident {
				q.residents = append(q.residents, e.Key)
			} else {
				rep := q.residents[i%len(q.residents)]
				e.Data["legal_representative_id"] = rep
				if i%2 == 0 {
					q.reps = append(q.reps, rep)
				}
			}
			if err := pub.PublishAsync(ctx, code, done, e); err != nil {
				pub.Close()
				return err
			}
		}
		if err := pub.Flush(ctx); err != nil {
			pub.Close()
			return err
		}
		pub.Close()
		if n := failed.Load(); n > 0 {
			return fmt.Errorf("bench query: %d events of %s failed", n, code)
		}
	}
	if err := q.st.Bus.WaitCaughtUp(ctx); err != nil {
		return err
	}
	fmt.Fprintf(q.out, "  loaded            %d records into PostgreSQL and ClickHouse in %s\n", n+n/5, time.Since(start).Round(time.Millisecond))
	return nil
}

// grant gives health residents (masked at grade 2) and tax enterprises.
func (q *query) grant(ctx context.Context) error {
	ctl, cat := q.st.Bus.Control, q.st.Catalog
	q.purposes = [2]string{"疫苗接种通知", "纳税信用评价"}
	for i, r := range []struct {
		dept, item string
		fields     []string // nil: every field
		grade      int
	}{{"health", queryResident, []string{"citizen_id", "name", "division_code", "phone"}, 2}, {"tax", queryEnterprise, nil, 4}} {
		app, err := ctl.Apply(ctx, r.dept, control.Request{Item: r.item, Purpose: q.purposes[i], Fields: r.fields, Grade: r.grade, LookupRate: 10000})
		if err != nil {
			return err
		}
		for _, by := range []string{cat.Authority, cat.Item(r.item).Source} {
			if app.State == control.Granted {
				break
			}
			if app, err = ctl.Decide(ctx, app.ID, by, control.Verdict{Approve: true}); err != nil {
				return err
			}
		}
	}
	q.base = q.st.Bus.APIURL()
	for i, dept := range []string{"health", "tax"} {
		p := cat.Department(dept).Principal
		q.auth[i] = [2]string{p, q.st.Bus.Credentials[p]}
	}
	return nil
}

// run calls the API from q.clients goroutines for d and prints the figures.
func (q *query) run(ctx context.Context, name string, mkURL func(*rand.Rand) string, auth [2]string, d time.Duration) (int, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = q.clients
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	var mu sync.Mutex
	var lat []time.Duration
	codes := map[int]int{}
	cpu0, pg0, ch0 := resourceUsage(), procstat.Tree(q.st.PG.Pid()), procstat.Tree(q.st.CH.Pid())
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for c := 0; c < q.clients; c++ {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 42))
			var mine []time.Duration
			mineCodes := map[int]int{}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", mkURL(r), nil)
				req.SetBasicAuth(auth[0], auth[1])
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					mineCodes[0]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mine = append(mine, time.Since(t0)) // a refusal is not a call served
				}
				mineCodes[resp.StatusCode]++
			}
			mu.Lock()
			lat = append(lat, mine...)
			for k, v := range mineCodes {
				codes[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1 := resourceUsage()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	n := len(lat) // answered (200)
	all := 0
	for _, c := range codes {
		all += c
	}
	own := cpu1.user + cpu1.sys - cpu0.user - cpu0.sys
	pg, ch := procstat.Tree(q.st.PG.Pid())-pg0, procstat.Tree(q.st.CH.Pid())-ch0
	fmt.Fprintf(q.out, "  %s\n", name)
	fmt.Fprintf(q.out, "    answered (200)  %d in %s: %.0f calls/s\n", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	fmt.Fprintf(q.out, "    every call      %d: %.0f calls/s; answers %v (refusals and failures are not calls served)\n", all, float64(all)/elapsed.Seconds(), codes)
	fmt.Fprintf(q.out, "    latency (200s)  p50 %s  p99 %s  p999 %s\n", pct(0.5).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(0.999).Round(10*time.Microsecond))
	if n > 0 {
		fmt.Fprintf(q.out, "    CPU             jutong+clients %.1fs (%.0f µs per answered call), PostgreSQL %.1fs (%.0f µs per answered call), ClickHouse %.1fs\n",
			own.Seconds(), float64(own.Microseconds())/float64(n), pg.Seconds(), float64(pg.Microseconds())/float64(n), ch.Seconds())
	}
	if codes[200] == 0 {
		return n, fmt.Errorf("bench query: no call answered 200: %v", codes)
	}
	return codes[200], nil
}

// audited waits until ClickHouse's audit table holds a row per answered call.
func (q *query) audited(ctx context.Context, calls int) error {
	start := time.Now()
	var n uint64
	for time.Since(start) < 2*time.Minute {
		if err := q.st.CHConn.QueryRow(ctx, "SELECT count() FROM audit WHERE kind = 'lookup'").Scan(&n); err == nil && int(n) >= calls {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(q.out, "  audit             %d lookup rows in ClickHouse for %d answered calls (%s after the last call)\n", n, calls, time.Since(start).Round(time.Millisecond))
	if int(n) != calls {
		return fmt.Errorf("bench query: %d audit rows for %d calls", n, calls)
	}
	return nil
}
