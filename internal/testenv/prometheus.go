package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/freeport"
)

// Prometheus starts Debian's prometheus scraping target (host:port,
// /metrics) every second and returns its URL; "" when it is not installed
// and CI is not set (with CI=true the test fails instead). With caFile the
// target is scraped over HTTPS, trusting that CA.
func Prometheus(t testing.TB, target, caFile string) string {
	t.Helper()
	tlsCfg := ""
	if caFile != "" {
		tlsCfg = fmt.Sprintf("    scheme: https\n    tls_config:\n      ca_file: '%s'\n", caFile)
	}
	return startPrometheus(t, fmt.Sprintf("scrape_configs:\n  - job_name: jutong\n%s    static_configs:\n      - targets: ['%s']\n", tlsCfg, target))
}

// startPrometheus runs Debian's prometheus with the global settings (every
// second) followed by body; "" when it is not installed and CI is not set.
func startPrometheus(t testing.TB, body string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed (Debian package prometheus; scripts/deps.sh installs it)")
		}
		t.Log("prometheus is not installed: the checks against a real Prometheus are skipped")
		return ""
	}
	dir := t.TempDir()
	cfg := "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n" + body
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.One()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return startDaemon(t, "prometheus", exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn"), "http://"+addr)
}

// startDaemon starts cmd, stopped at the test's end, and waits until base
// answers /-/ready (Prometheus and Alertmanager both do).
func startDaemon(t testing.TB, name string, cmd *exec.Cmd, base string) string {
	t.Helper()
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(base + "/-/ready"); err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start: %s", name, logs.String())
		}
	}
}

// PromQuery runs an instant query and returns how many series it answered.
func PromQuery(base, q string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []json.RawMessage
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	return len(r.Data.Result), nil
}

// DashboardQueries reads every panel query of the Grafana dashboards in dir,
// by "file: panel title".
func DashboardQueries(t testing.TB, dir string) map[string][]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) < 4 {
		t.Fatalf("dashboards in %s: %v", dir, files)
	}
	out := map[string][]string{}
	for _, f := range files {
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				key := filepath.Base(f) + ": " + p.Title
				out[key] = append(out[key], tg.Expr)
			}
		}
	}
	return out
}

// PromQueryEventually runs an instant query until it answers with at least
// one series or the wait ends: rate() and increase() need two scrapes in their
// window, which a loaded machine takes longer to have.
func PromQueryEventually(base, q string, wait time.Duration) (int, error) {
	deadline := time.Now().Add(wait)
	for {
		n, err := PromQuery(base, q)
		if (err == nil && n > 0) || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}
