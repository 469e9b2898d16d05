package bus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
)

var metricName = regexp.MustCompile(`\bjutong_[a-z0-9_]+`)

// TestDashboardsAndRules runs a bus with traffic (publishers, a refused
// record, the gateway, an application, a grant, a subscriber), scrapes its
// /metrics, and checks that every metric the dashboards and the alert rules
// use is exported, so that a renamed metric breaks the build, not the big
// screen. Then a real Prometheus (Debian's) scrapes the bus and every
// dashboard panel's query must return data.
func TestDashboardsAndRules(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN, ReadAuditEvery: time.Second, DecodeCache: 1 << 16})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prom := testenv.Prometheus(t, strings.TrimPrefix(b.APIURL(), "http://"), "")

	// Traffic: market supervision publishes (one record refused), the
	// gateway takes one event, tax applies, is granted and reads.
	const item = "legal_person.enterprise_registration"
	it := cat.Item(item)
	p := cat.Department(it.Source).Principal
	pub, err := producers.New(ctx, cat, it.Source, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, producers.Metrics(b.Metrics))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	g := synth.New(it, 4, time.Now())
	for round := 0; round < 5; round++ {
		evs := make([]*schemas.Event, 200)
		for i := range evs {
			evs[i] = g.Next()
		}
		if bad := g.Corrupt(evs[len(evs)-2]); bad != nil { // [-1] is a delete: no data to spoil
			evs = append(evs, bad)
		} else {
			t.Fatal("nothing to corrupt")
		}
		res, _ := pub.Publish(ctx, item, evs...)
		var v *rules.Violation
		for i, r := range res {
			if refused := errors.As(r.Err, &v); (r.Err != nil && !refused) || refused != (i == len(res)-1) {
				t.Fatalf("event %d of %d: %v", i, len(res), r.Err)
			}
		}
		time.Sleep(700 * time.Millisecond)
	}
	ev := g.Next()
	line, _ := json.Marshal(map[string]any{"event_id": ev.ID, "op": "CREATE", "key": ev.Key, "event_time": ev.EventTime,
		"data": func() map[string]any {
			m := map[string]any{}
			for k, v := range ev.Data {
				m[k] = schemas.PortableValue(it.Field(k), v)
			}
			return m
		}()})
	req, _ := http.NewRequest("POST", b.APIURL()+"/v1/items/"+item+"/events", bytes.NewReader(line))
	req.Header.Set("Authorization", "Bearer "+b.Tokens[it.Source])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode >= 300 {
		t.Fatalf("gateway: %v %v", err, resp)
	}
	cc := controlClient{t, b.APIURL(), b}
	var app control.Application
	cc.call("tax", "POST", "/v1/applications", control.Request{Item: item, Purpose: "纳税信用评价"}, &app)
	cc.call("big_data", "POST", "/v1/applications/"+app.ID+"/approve", control.Verdict{}, &app)
	if _, err := readAll(t, b, cat, "tax", item, 100, "credit"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // a few more scrapes, the read audit, the quarantine copy

	// 1. Every metric named by a dashboard or a rule is exported.
	resp, err := http.Get(b.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scraped, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	exported := map[string]bool{}
	decodes := map[string]float64{}
	for _, line := range strings.Split(string(scraped), "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			exported[strings.Fields(line)[2]] = true
		}
		if strings.HasPrefix(line, "jutong_sink_decodes_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sink := strings.Split(strings.SplitAfter(line, `sink="`)[1], `"`)[0]
			decodes[sink+"/"+strings.Split(strings.SplitAfter(line, `how="`)[1], `"`)[0]] += v
		}
	}
	t.Logf("decodes by the sinks and feeds: %v", decodes)
	// PostgreSQL and ClickHouse decode every record into columns
	// themselves (pipeline.ColumnSink): nothing of the decode cache, which
	// holds maps for the runners that read maps (the masked copies).
	for _, sink := range []string{"postgres", "clickhouse"} {
		if decodes[sink+"/shared"] != 0 || decodes[sink+"/decoded"] < 1000 {
			t.Errorf("decodes by sink %s: %v, want every record decoded into columns, none shared", sink, decodes)
		}
	}
	used := map[string]string{}
	for panel, exprs := range testenv.DashboardQueries(t, "../../../dashboards") {
		for _, e := range exprs {
			for _, m := range metricName.FindAllString(e, -1) {
				used[m] = panel
			}
		}
	}
	rules, err := os.ReadFile("../../../dashboards/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metricName.FindAllString(string(rules), -1) {
		used[m] = "alerts.yml"
	}
	for m, where := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
		if !exported[base] && !exported[m] {
			t.Errorf("%s uses %s, which the bus does not export", where, m)
		}
	}
	if t.Failed() {
		var n uint64
		_ = testenv.ClickHouseConn(t, b.ClickHouseDSN()).QueryRow(ctx, "SELECT count() FROM rejects").Scan(&n)
		var kafka []string
		for m := range exported {
			if strings.HasPrefix(m, "jutong_kafka") {
				kafka = append(kafka, m)
			}
		}
		t.Logf("rejects in ClickHouse: %d; Kafka client metrics: %v", n, kafka)
	}
	if len(used) < 10 {
		t.Fatalf("only %d metrics used: %v", len(used), used)
	}

	// 2. A real Prometheus scraping the bus answers every panel with data.
	if prom == "" {
		return
	}
	vars := strings.NewReplacer("$department", "market_supervision", "$item", item)
	for panel, exprs := range testenv.DashboardQueries(t, "../../../dashboards") {
		for _, e := range exprs {
			q := vars.Replace(e)
			n, err := testenv.PromQueryEventually(prom, q, 30*time.Second)
			if err != nil || n == 0 {
				t.Errorf("%s: %s returned %d series (%v)", panel, q, n, err)
			}
		}
	}
}
