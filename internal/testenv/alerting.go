package testenv

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/freeport"
)

// Alerting is a real alerting stack for a test: Debian's Prometheus
// scraping a target and evaluating alert rules, Debian's Alertmanager
// routing what fires, and the notifications it sends, received over HTTP.
type Alerting struct {
	Prometheus   string // base URL
	Alertmanager string // base URL

	mu    sync.Mutex
	notes []Notification
}

// Notification is one webhook call of Alertmanager (its JSON, version 4).
type Notification struct {
	Receiver string `json:"receiver"`
	Status   string `json:"status"` // firing or resolved
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

// relay is the webhook host the shipped Alertmanager configuration sends to
// (dashboards/alertmanager.yml): the test's receiver takes its place.
const relay = "http://alert-relay:9095"

// StartAlerting starts the stack, or returns nil when prometheus or
// prometheus-alertmanager is not installed and CI is not set (with CI=true
// the test fails). rulesFile and amConfig are the shipped files; the rules
// run with every for: divided by speedup (their expressions as written), so
// that a test sees in seconds what takes minutes: the real durations are
// checked by promtool (dashboards/alerts_test.yml). Alertmanager runs the
// shipped routing, grouping, timings and inhibitions; only the receivers'
// host is the test's.
func StartAlerting(t testing.TB, target, rulesFile, amConfig string, speedup int) *Alerting {
	t.Helper()
	am, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus-alertmanager is not installed (Debian package prometheus-alertmanager; scripts/deps.sh installs it)")
		}
		t.Log("prometheus-alertmanager is not installed: the alerting checks are skipped")
		return nil
	}
	if _, err := exec.LookPath("prometheus"); err != nil && os.Getenv("CI") != "true" {
		t.Log("prometheus is not installed: the alerting checks are skipped")
		return nil
	}
	a := &Alerting{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(a.receive), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Close() })

	dir := t.TempDir()
	amCfg, err := os.ReadFile(amConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(amCfg), relay) {
		t.Fatalf("%s sends to no %s receiver", amConfig, relay)
	}
	amFile := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(amFile, []byte(strings.ReplaceAll(string(amCfg), relay, "http://"+ln.Addr().String())), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.One()
	if err != nil {
		t.Fatal(err)
	}
	amAddr := "127.0.0.1:" + strconv.Itoa(port)
	a.Alertmanager = startDaemon(t, "alertmanager", exec.Command(am, "--config.file="+amFile, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=", "--log.level=warn"), "http://"+amAddr)

	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	rulesPath := filepath.Join(dir, "alerts.yml")
	if err := os.WriteFile(rulesPath, []byte(SpeedUpRules(string(rules), speedup)), 0o644); err != nil {
		t.Fatal(err)
	}
	a.Prometheus = startPrometheus(t, fmt.Sprintf("rule_files: ['%s']\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['%s']\n"+
		"scrape_configs:\n  - job_name: jutong\n    static_configs:\n      - targets: ['%s']\n", rulesPath, amAddr, target))
	return a
}

var forRe = regexp.MustCompile(`(?m)^(\s+for:\s*)(\d+[smh])\s*$`)

// SpeedUpRules divides every for: of a rules file by speedup (at least 1s).
func SpeedUpRules(rules string, speedup int) string {
	return forRe.ReplaceAllStringFunc(rules, func(m string) string {
		sub := forRe.FindStringSubmatch(m)
		d, err := time.ParseDuration(sub[2])
		if err != nil {
			return m
		}
		return sub[1] + strconv.Itoa(max(1, int(d.Seconds())/speedup)) + "s"
	})
}

func (a *Alerting) receive(w http.ResponseWriter, r *http.Request) {
	var n Notification
	if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.notes = append(a.notes, n)
	a.mu.Unlock()
}

// Notifications returns what Alertmanager has sent so far.
func (a *Alerting) Notifications() []Notification {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Notification(nil), a.notes...)
}

// Notified says whether receiver got an alert named name in status
// (firing or resolved) whose labels include want.
func (a *Alerting) Notified(receiver, name, status string, want map[string]string) bool {
	for _, n := range a.Notifications() {
		if n.Receiver != receiver {
			continue
		}
	alerts:
		for _, al := range n.Alerts {
			if al.Labels["alertname"] != name || al.Status != status {
				continue
			}
			for k, v := range want {
				if al.Labels[k] != v {
					continue alerts
				}
			}
			return true
		}
	}
	return false
}

// Firing lists the alerts Prometheus has firing now, as "name{label=value,...}"
// of their identifying labels (severity and alertstate left out).
func (a *Alerting) Firing() ([]string, error) {
	resp, err := http.Get(a.Prometheus + "/api/v1/query?query=" + url.QueryEscape(`ALERTS{alertstate="firing"}`))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct{ Metric map[string]string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s", r.Error)
	}
	var out []string
	for _, s := range r.Data.Result {
		var ls []string
		for k, v := range s.Metric {
			if k != "alertname" && k != "alertstate" && k != "severity" && k != "__name__" && k != "job" && k != "instance" {
				ls = append(ls, k+"="+v)
			}
		}
		slices.Sort(ls)
		out = append(out, s.Metric["alertname"]+"{"+strings.Join(ls, ",")+"}")
	}
	return out, nil
}
