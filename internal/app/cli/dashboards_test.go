package cli

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/freeport"
	"github.com/jutong/jutong/internal/localsvc"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/internal/tlsca"
)

// waitServing waits until the demo serves; retry says it ended because one
// of the free ports picked for it was taken meanwhile (tests run in parallel).
func waitServing(t *testing.T, out, errOut *syncBuffer, done chan int) (started, retry bool) {
	for !strings.Contains(out.String(), "Serving until Ctrl-C.") {
		select {
		case <-done:
			return false, strings.Contains(errOut.String(), "address already in use") && !strings.Contains(errOut.String(), "api: listen")
		case <-time.After(200 * time.Millisecond):
		}
	}
	return true, false
}

// TestDemoDashboards: a real Prometheus (Debian's) scrapes `jutong demo`
// while it runs, and every panel of every dashboard answers with data.
func TestDemoDashboards(t *testing.T) {
	if os.Getenv(localsvc.EnvPostgresDSN) == "" {
		if _, err := os.Stat("/usr/lib/postgresql"); err != nil && os.Getenv("CI") != "true" {
			t.Skip("no PostgreSQL binaries and no " + localsvc.EnvPostgresDSN)
		}
	}
	port, err := freeport.One()
	if err != nil {
		t.Fatal(err)
	}
	api := "127.0.0.1:" + strconv.Itoa(port)
	dir, err := os.MkdirTemp("", "jutong-demo-dash-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The demo serves /metrics over HTTPS with its CA, made here first so
	// that Prometheus trusts it from its start (the demo keeps it).
	certs, err := tlsca.Ensure(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	prom := testenv.Prometheus(t, api, certs.CA)
	if prom == "" {
		t.Skip("prometheus is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut *syncBuffer
	var done chan int
	for attempt := 1; ; attempt++ {
		out, errOut, done = &syncBuffer{}, &syncBuffer{}, make(chan int, 1)
		go func() {
			done <- Run(ctx, []string{"demo", "--events", "4000", "--seed", "9", "--data-dir", dir, "--kafka-ports", freePorts(t, 3),
				"--registry-addr", "127.0.0.1:0", "--api-addr", api}, out, errOut)
		}()
		started, retry := waitServing(t, out, errOut, done)
		if started {
			break
		}
		if !retry || attempt == 3 {
			t.Fatalf("the demo ended: %s\n%s", out.String(), errOut.String())
		}
		t.Logf("a port was taken meanwhile by another test: again (%s)", strings.TrimSpace(errOut.String()))
	}
	time.Sleep(4 * time.Second) // a few more scrapes: rate() needs two samples
	vars := strings.NewReplacer("$department", "market_supervision", "$item", "legal_person.enterprise_registration")
	panels := 0
	for panel, exprs := range testenv.DashboardQueries(t, "../../../dashboards") {
		panels++
		for _, e := range exprs {
			q := vars.Replace(e)
			if n, err := testenv.PromQueryEventually(prom, q, 30*time.Second); err != nil || n == 0 {
				t.Errorf("%s: %s returned %d series (%v)", panel, q, n, err)
			}
		}
	}
	if panels < 20 {
		t.Errorf("only %d panels", panels)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("the demo exited %d: %s", code, errOut.String())
	}
}
