package bus_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dispute"
)

// speedup divides the rules' for: in TestAlertsFire (30m becomes 30 s).
const speedup = 60

// TestAlertsFire runs the shipped alert rules and Alertmanager routing
// against a real bus, a real Prometheus and a real Alertmanager:
//   - an idle bus, for longer than every (sped-up) for:, fires nothing and
//     notifies no one;
//   - a record no sink can decode fires JutongDeadLetters, a ticket;
//   - a dispute past its deadline fires JutongDisputeOverdue, a ticket;
//   - PostgreSQL unreachable while records come fires JutongSinkFailing and
//     then JutongSinkStalled, which pages (and the page resolves when
//     PostgreSQL is back);
//   - the bus stopped fires JutongDown, which pages.
//
// The for: durations are divided by speedup (the expressions, the routing,
// the grouping waits and the inhibitions run as shipped); promtool checks
// the real durations (dashboards/alerts_test.yml, in make test).
func TestAlertsFire(t *testing.T) {
	dsn := testenv.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skipf("needs a URL-form DSN to put a proxy in front of it: %q", dsn)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	clk := &clock{}
	b := startBus(t, bus.Config{PostgresDSN: u.String(), Now: clk.now, ControlEvery: time.Hour, ReadAuditEvery: time.Hour,
		Pipeline: pipeline.Config{RetryMax: time.Second, LagEvery: 500 * time.Millisecond}})
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = b.Close(context.Background())
		}
	})
	al := testenv.StartAlerting(t, strings.TrimPrefix(b.APIURL(), "http://"), "../../../dashboards/alerts.yml", "../../../dashboards/alertmanager.yml", speedup)
	if al == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cat := sample(t)
	cc := controlClient{t, b.APIURL(), b}
	pub := publisher(t, b)
	gen := synth.New(cat.Item(item), 41, time.Now())
	publish := func(n int) []*schemas.Event {
		evs := make([]*schemas.Event, n)
		for i := range evs {
			evs[i] = gen.Next()
		}
		if _, err := pub.Publish(ctx, item, evs...); err != nil {
			t.Fatal(err)
		}
		return evs
	}
	evs := publish(500)
	grant(t, cc, cat, "civil_affairs", control.Request{Item: item, Purpose: "社会组织登记核查", Grade: 4})
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}

	// 1. Idle, for longer than the longest for: (and Alertmanager's waits).
	longest := maxFor(t) / speedup
	idle := time.Now()
	for time.Since(idle) < longest+10*time.Second {
		firing, err := al.Firing()
		if err != nil {
			t.Fatal(err)
		}
		if len(firing) > 0 {
			t.Fatalf("on an idle bus, after %s: firing %v", time.Since(idle).Round(time.Second), firing)
		}
		time.Sleep(time.Second)
	}
	if n := al.Notifications(); len(n) > 0 {
		t.Fatalf("on an idle bus: notified %+v", n)
	}

	// 2. A record no sink can decode, a dispute past its deadline, and
	// PostgreSQL unreachable while records come, all at once.
	raw, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.ProduceSync(ctx, &kgo.Record{Topic: cat.Item(item).Topic(), Key: []byte(evs[0].Key), Value: []byte("not avro")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var d dispute.Dispute
	if code := cc.call("civil_affairs", "POST", "/v1/disputes", dispute.Request{Item: item, Key: evs[1].Key, Fields: []string{"name"}, Claim: "名称有误", Evidence: "登记档案"}, &d); code != http.StatusCreated {
		t.Fatalf("civil affairs raises a dispute: %d", code)
	}
	clk.add(15 * 24 * time.Hour)
	if err := b.Disputes.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	// The dead letter reaches the ticket before PostgreSQL goes (it is
	// written by the sink that dead-letters it).
	waitFor(t, ctx, 90*time.Second, "JutongDeadLetters notified as a ticket", func() bool {
		return al.Notified("ticket", "JutongDeadLetters", "firing", map[string]string{"sink": "postgres", "item": item})
	})
	proxy.Block()
	down := time.Now()
	stopPub := make(chan struct{})
	pubDone := make(chan struct{})
	go func() { // records keep coming while it is down
		defer close(pubDone)
		for {
			select {
			case <-stopPub:
				return
			case <-time.After(time.Second):
				evs := make([]*schemas.Event, 100)
				for i := range evs {
					evs[i] = gen.Next()
				}
				_, _ = pub.Publish(ctx, item, evs...)
			}
		}
	}()
	waitFor(t, ctx, 90*time.Second, "JutongDisputeOverdue notified as a ticket", func() bool {
		return al.Notified("ticket", "JutongDisputeOverdue", "firing", map[string]string{"source": "market_supervision"})
	})
	waitFor(t, ctx, 90*time.Second, "JutongSinkStalled paged", func() bool {
		return al.Notified("page", "JutongSinkStalled", "firing", map[string]string{"sink": "postgres"})
	})
	firing, err := al.Firing()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"JutongSinkFailing{sink=postgres}", "JutongSinkStalled{sink=postgres}", "JutongDisputeOverdue{source=market_supervision}"} {
		if !slices.Contains(firing, want) {
			t.Errorf("after %s of outage, firing %v: no %s", time.Since(down).Round(time.Second), firing, want)
		}
	}
	// The stalled sink pages; its failing ticket is inhibited.
	if al.Notified("ticket", "JutongSinkFailing", "firing", map[string]string{"sink": "postgres"}) {
		t.Error("JutongSinkFailing was ticketed while JutongSinkStalled paged for the same sink (the inhibition)")
	}

	// PostgreSQL is back: the sink catches up and the page resolves.
	close(stopPub)
	<-pubDone
	proxy.Unblock()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 3*time.Minute, "the JutongSinkStalled page resolved", func() bool {
		return al.Notified("page", "JutongSinkStalled", "resolved", map[string]string{"sink": "postgres"})
	})

	// 3. The bus stops: its scrape fails and JutongDown pages.
	closed = true
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 90*time.Second, "JutongDown paged", func() bool {
		return al.Notified("page", "JutongDown", "firing", map[string]string{"job": "jutong"})
	})
	// Nothing went to a receiver its severity does not route to.
	for _, n := range al.Notifications() {
		for _, a := range n.Alerts {
			want := map[string]string{"critical": "page", "warning": "ticket", "info": "report"}[a.Labels["severity"]]
			if n.Receiver != want {
				t.Errorf("%s (severity %s) went to %s", a.Labels["alertname"], a.Labels["severity"], n.Receiver)
			}
		}
	}
}

func waitFor(t *testing.T, ctx context.Context, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// maxFor is the longest for: of the shipped rules.
func maxFor(t *testing.T) time.Duration {
	rules, err := os.ReadFile("../../../dashboards/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var longest time.Duration
	for _, m := range regexp.MustCompile(`(?m)^\s+for:\s*(\S+)`).FindAllStringSubmatch(string(rules), -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatal(err)
		}
		longest = max(longest, d)
	}
	if longest == 0 {
		t.Fatal("no for: in dashboards/alerts.yml")
	}
	return longest
}

// TestAlertsDocumented: every rule of dashboards/alerts.yml has a row in
// docs/operations.md's alert table with its severity and for:, a runbook
// section, and a case in dashboards/alerts_test.yml where it fires.
func TestAlertsDocumented(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile("../../../" + p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	rules, docs, cases := read("dashboards/alerts.yml"), read("docs/operations.md"), read("dashboards/alerts_test.yml")
	blocks := regexp.MustCompile(`(?m)^\s+- alert: `).Split(rules, -1)[1:]
	if len(blocks) < 10 {
		t.Fatalf("%d rules in dashboards/alerts.yml", len(blocks))
	}
	forRe := regexp.MustCompile(`(?m)^\s+for:\s*(\S+)`)
	sevRe := regexp.MustCompile(`(?m)^\s+severity:\s*(\S+)`)
	for _, blk := range blocks {
		name := strings.Fields(blk)[0]
		forDur := "—"
		if m := forRe.FindStringSubmatch(blk); m != nil {
			forDur = m[1]
		}
		sev := sevRe.FindStringSubmatch(blk)
		if sev == nil {
			t.Errorf("%s has no severity label", name)
			continue
		}
		row := regexp.MustCompile(`(?m)^\| ` + name + ` \| ([^|]+) \|[^|]+\| ([^|]+) \|`).FindStringSubmatch(docs)
		switch {
		case row == nil:
			t.Errorf("docs/operations.md: no row for %s in the alert table", name)
		case strings.TrimSpace(row[1]) != sev[1] || strings.Trim(strings.TrimSpace(row[2]), "`") != forDur:
			t.Errorf("docs/operations.md says %s is %s with for: %s; dashboards/alerts.yml says %s, %s", name, row[1], row[2], sev[1], forDur)
		}
		if !strings.Contains(docs, "\n### "+name+"\n") {
			t.Errorf("docs/operations.md: no runbook section ### %s", name)
		}
		if !regexp.MustCompile(`alertname: ` + name + `\s+exp_alerts:\s*\n\s+- exp_labels`).MatchString(cases) {
			t.Errorf("dashboards/alerts_test.yml: no case where %s fires", name)
		}
	}
}
