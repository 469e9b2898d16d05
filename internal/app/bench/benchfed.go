package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/app/federation"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/procstat"
	"github.com/jutong/jutong/model/topicname"
)

// benchFederation runs `jutong bench federation`: a city bus and one
// district bus (jutong dev processes) and the district's bridge (a
// process); the bridge stopped, the city's market supervision publishes
// --events enterprises and residents' changes, which the city's door and
// feed take; then the bridge starts and carries them into the district,
// whose door and sinks land them. Printed: the bridge's events/s and CPU
// per 100,000 events, the district bus's, and the ratio (goal: the bridge
// adds at most 20 % to the receiving bus's CPU per event).
func benchFederation(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("bench federation", benchDesc, errOut)
	events := fs.Int("events", 100_000, "events published on the city (residents, masked for the district, then enterprises, whole)")
	dataDir := fs.String("data-dir", "", "where the buses keep their files (default: a temporary directory, removed after)")
	port := fs.Int("port", 0, "the first port, bus i taking port+10i..+3 (default: free ports, locked against other processes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir := *dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "jutong-bench-fed-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	fmt.Fprintf(out, "jutong bench federation: %d events, a city bus and a district bus (jutong dev, one broker each) and the bridge, each a process; databases: one local PostgreSQL and ClickHouse\n", *events)
	f, err := federation.Start(ctx, federation.Options{DataDir: dir, Districts: 1, BasePort: *port, FreePorts: *port == 0,
		Command: func(args ...string) *exec.Cmd { return exec.Command(exe, args...) }})
	if err != nil {
		return err
	}
	defer f.Close()
	f.Bridge(0).Stop()
	d := f.Districts[0]
	half := *events / 2
	recs := map[string]int{}
	start := time.Now()
	for i, r := range federation.DefaultReceives {
		n := half
		if i == 1 {
			n = *events - half
		}
		for done, seed := 0, uint64(1); done < n; seed++ {
			k := min(n-done, 20_000)
			if _, err := f.Publish(ctx, r.Item, k, seed*7+uint64(i)); err != nil {
				return err
			}
			done += k
		}
		recs[r.Item] = n
	}
	// Wait until the city's door and feed have them all: the district's
	// grants read the feed (residents) and the item's topic (enterprises).
	k, err := f.City.Admin()
	if err != nil {
		return err
	}
	opts, err := k.Opts()
	if err != nil {
		return err
	}
	for _, r := range federation.DefaultReceives {
		topic, err := grantTopic(ctx, opts, federation.DistrictDepartment(d.Name), r.Item)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Minute)
		for {
			n := 0
			if err := kafkaconn.ReadAll(ctx, opts, topic, func(*kgo.Record) { n++ }); err != nil {
				return err
			}
			if n >= recs[r.Item] {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the city's %s has %d of %d records after 10 minutes", topic, n, recs[r.Item])
			}
			time.Sleep(2 * time.Second)
		}
	}
	fmt.Fprintf(out, "published and through the city's door and feed in %.1fs\n", time.Since(start).Seconds())

	// The bridge alone, then the district landing what it carried.
	distPid := d.Proc().Pid()
	distCPU0 := procstat.Tree(distPid)
	t0 := time.Now()
	if err := f.StartBridge(0); err != nil {
		return err
	}
	bridgePid := f.Bridge(0).Pid()
	var carried, bridgeCPU, startCPU time.Duration
	started := false
	for carried == 0 {
		n, err := scrapeSum(f.BridgeMetrics(0), `jutong_bridge_records_total{bus="city",item="`, `outcome="forwarded"`)
		if err == nil && !started {
			started, startCPU = true, procstat.Tree(bridgePid) // up: started, ledger read, connected
		}
		if err == nil && n >= float64(*events) {
			carried = time.Since(t0)
			bridgeCPU = procstat.Tree(bridgePid)
		}
		if time.Since(t0) > 20*time.Minute {
			return fmt.Errorf("the bridge carried %.0f of %d in 20 minutes", n, *events)
		}
		time.Sleep(100 * time.Millisecond)
	}
	chOpts, err := clickhouse.ParseDSN(d.CHDSN)
	if err != nil {
		return err
	}
	ch, err := clickhouse.Open(chOpts)
	if err != nil {
		return err
	}
	defer ch.Close()
	var landed time.Duration
	for landed == 0 {
		var n uint64
		if err := ch.QueryRow(ctx, `SELECT count() FROM events`).Scan(&n); err == nil && n >= uint64(*events) {
			landed = time.Since(t0)
		}
		if time.Since(t0) > 30*time.Minute {
			return fmt.Errorf("the district landed %d of %d in 30 minutes", n, *events)
		}
		time.Sleep(200 * time.Millisecond)
	}
	distCPU := procstat.Tree(distPid) - distCPU0
	per := func(c time.Duration) float64 { return c.Seconds() / float64(*events) * 100_000 }
	fmt.Fprintf(out, "bridge (process %d): %d events forwarded into the district's inbox in %.1fs (from its start): %.0f events/s, %.2f CPU-s per 100k events (%.2f of them its start: %.2fs CPU)\n",
		bridgePid, *events, carried.Seconds(), float64(*events)/carried.Seconds(), per(bridgeCPU), per(startCPU), startCPU.Seconds())
	fmt.Fprintf(out, "district bus (process %d: door, PostgreSQL and ClickHouse sinks): all landed in ClickHouse after %.1fs: %.0f events/s end to end, %.2f CPU-s per 100k events\n",
		distPid, landed.Seconds(), float64(*events)/landed.Seconds(), per(distCPU))
	fmt.Fprintf(out, "the bridge adds %.0f %% to the receiving bus's CPU per event, %.0f %% without its start (goal <= 20 %%)\n",
		100*bridgeCPU.Seconds()/distCPU.Seconds(), 100*(bridgeCPU-startCPU).Seconds()/distCPU.Seconds())
	return nil
}

// grantTopic is the topic a department's grant reads an item on: its feed
// when there is one, else the item's topic.
func grantTopic(ctx context.Context, opts []kgo.Opt, dept, item string) (string, error) {
	cl, err := kafkaconn.NewClient(opts)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return "", err
	}
	for _, t := range listed.Names() {
		if d, it, _, ok := topicname.ParseFeed(t); ok && d == dept && it == item {
			return t, nil
		}
	}
	return item, nil
}

// scrapeSum sums the series on a /metrics page that begin with prefix and
// carry label (the records forwarded: a record kept as refused is not
// one carried).
func scrapeSum(url, prefix, label string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, prefix) && strings.Contains(l, label) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum, sc.Err()
}
