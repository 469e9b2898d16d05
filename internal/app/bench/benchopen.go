package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/producers"
)

// benchOpen runs `jutong bench open`: the open system's search (CKAN's
// package_search and the portal's search page) from concurrent clients, and
// the download of a release of --records rows, against everything on this
// machine.
func benchOpen(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("bench open", benchDesc, errOut)
	records := fs.Int("records", 100_000, "enterprises published, released as one dataset")
	clients := fs.Int("clients", 16, "concurrent search clients")
	duration := fs.Duration("duration", 10*time.Second, "length of each search run")
	downloads := fs.Int("downloads", 5, "downloads of the CSV release, one after the other")
	var sf stackFlags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, done, err := sf.start(ctx, errOut, nil)
	if err != nil {
		return err
	}
	defer done()
	fmt.Fprintf(out, "jutong bench open: %d enterprises released; %d search clients over HTTP, in this process\n", *records, *clients)
	it := st.Catalog.Item(queryEnterprise)
	pub, err := producers.New(ctx, st.Catalog, it.Source, st.Bus.Conn(it.Source))
	if err != nil {
		return err
	}
	g := synth.New(it, 11, time.Now())
	g.UpdateEvery, g.DeleteEvery = 0, 0
	var failed atomic.Int64
	for i := 0; i < *records; i++ {
		if err := pub.PublishAsync(ctx, it.Code, func(r producers.Result) {
			if r.Err != nil {
				failed.Add(1)
			}
		}, g.Next()); err != nil {
			pub.Close()
			return err
		}
	}
	err = pub.Flush(ctx)
	pub.Close()
	if err != nil {
		return err
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("bench open: %d events failed", n)
	}
	if err := st.Bus.WaitCaughtUp(ctx); err != nil {
		return err
	}
	quiesce(2 * time.Minute)
	cpu0 := resourceUsage()
	t0 := time.Now()
	n, err := st.Bus.RefreshOpen(ctx)
	if err != nil {
		return err
	}
	cpu1 := resourceUsage()
	fmt.Fprintf(out, "  release           %d datasets released in %s (CPU jutong %.1fs)\n", n, time.Since(t0).Round(time.Millisecond), (cpu1.user + cpu1.sys - cpu0.user - cpu0.sys).Seconds())
	q := &query{st: st, out: out, clients: *clients}
	base := st.Bus.APIURL()
	for _, run := range []struct {
		name, url string
	}{
		{"search, CKAN package_search (q=企业, facets)", base + "/api/3/action/package_search?q=" + url.QueryEscape("企业") + "&facet.field=" + url.QueryEscape(`["organization","tags"]`)},
		{"search, the portal's page (q=企业)", base + "/?q=" + url.QueryEscape("企业")},
	} {
		if _, err := q.run(ctx, run.name, func(*rand.Rand) string { return run.url }, [2]string{}, *duration); err != nil {
			return err
		}
	}
	// Downloads: the newest release's CSV, read whole by one client.
	hc := &http.Client{Timeout: 5 * time.Minute}
	var total int64
	cpu0 = resourceUsage()
	t0 = time.Now()
	for i := 0; i < *downloads; i++ {
		resp, err := hc.Get(base + "/open/download/" + it.Code + "/latest.csv")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("bench open: download answered %s", resp.Status)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		total += n
	}
	elapsed := time.Since(t0)
	cpu1 = resourceUsage()
	fmt.Fprintf(out, "  download (CSV)    %d x %.1f MB in %s: %.0f MB/s; CPU jutong+client %.2fs (%.1f ms/MB)\n",
		*downloads, float64(total)/float64(*downloads)/1e6, elapsed.Round(time.Millisecond), float64(total)/1e6/elapsed.Seconds(),
		(cpu1.user + cpu1.sys - cpu0.user - cpu0.sys).Seconds(), (cpu1.user+cpu1.sys-cpu0.user-cpu0.sys).Seconds()*1000/(float64(total)/1e6))
	return nil
}
