package bus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
)

// clock is a control-plane clock the test can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time      { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) add(d time.Duration) { c.offset.Add(int64(d)) }

type controlClient struct {
	t   *testing.T
	url string
	b   *bus.Bus
}

// call makes a control API call as dept and decodes the answer into out.
func (c controlClient) call(dept, method, path string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.b.Officers[dept])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		c.t.Logf("%s %s as %s: %d %s", method, path, dept, resp.StatusCode, raw)
		_ = json.Unmarshal(raw, out) // the error body, for a caller that reads it
	}
	return resp.StatusCode
}

func publishItem(t *testing.T, b *bus.Bus, cat *catalog.Catalog, code string, n int, seed uint64) []*schemas.Event {
	t.Helper()
	it := cat.Item(code)
	p := cat.Department(it.Source).Principal
	pub, err := producers.New(context.Background(), cat, it.Source, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	g := synth.New(it, seed, time.Now())
	g.DeleteEvery = 0
	evs := make([]*schemas.Event, n)
	for i := range evs {
		evs[i] = g.Next()
	}
	if _, err := pub.Publish(context.Background(), code, evs...); err != nil {
		t.Fatal(err)
	}
	return evs
}

// readAll subscribes as dept and reads until n events arrived or the wait
// ends; it returns the deliveries and the error that stopped it.
func readAll(t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept, item string, n int, group string) ([]consumers.Delivery, error) {
	t.Helper()
	p := cat.Department(dept).Principal
	sub, err := consumers.New(context.Background(), cat, dept, []string{item}, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, consumers.Group(group))
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []consumers.Delivery
	// Stop once n arrived: the handled events are committed as Run ends.
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	err = sub.Run(rctx, func(_ context.Context, d consumers.Delivery) error {
		got = append(got, d)
		if len(got) >= n {
			stop()
		}
		return nil
	})
	if err == nil && len(got) < n {
		err = fmt.Errorf("read %d of %d events before the wait ended", len(got), n)
	}
	return got, err
}

// haveKcat says whether Debian's kcat is installed: with CI=true it must be
// (scripts/deps.sh installs it), elsewhere its checks are skipped.
func haveKcat(t *testing.T) bool {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat is not installed (Debian package kcat; scripts/deps.sh installs it)")
		}
		t.Log("kcat is not installed: the librdkafka checks are skipped")
		return false
	}
	return true
}

// kcat runs Debian's kcat (librdkafka) as dept and returns its output.
func kcat(t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept string, args ...string) (string, error) {
	t.Helper()
	p := cat.Department(dept).Principal
	base := []string{"-b", strings.Join(b.Kafka().Brokers, ","), "-X", "security.protocol=SASL_PLAINTEXT",
		"-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=" + p, "-X", "sasl.password=" + b.Credentials[p]}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", append(base, args...)...).CombinedOutput()
	return string(out), err
}

// TestAccess: applications, approvals, grants as ACLs, masked feeds,
// revocation, expiry and the audit trail, with franz-go and with kcat.
func TestAccess(t *testing.T) {
	chDSN := testenv.ClickHouse(t)
	clk := &clock{}
	b := startBus(t, bus.Config{ClickHouseDSN: chDSN, Now: clk.now, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	cc := controlClient{t, b.APIURL(), b}
	const resident = "population.resident_registration"
	const enterprise = "legal_person.enterprise_registration"
	residents := publishItem(t, b, cat, resident, 200, 5)
	publishItem(t, b, cat, enterprise, 100, 6)

	// No grant: franz-go through the SDK and kcat are both refused.
	if _, err := readAll(t, b, cat, "health", resident, 1, "nogrant"); !errors.Is(err, consumers.ErrNotAuthorized) {
		t.Fatalf("health read %s without a grant: %v", resident, err)
	}
	withKcat := haveKcat(t)
	if out, err := kcat(t, b, cat, "health", "-C", "-t", resident, "-o", "beginning", "-e", "-q"); withKcat && (err == nil || !strings.Contains(strings.ToLower(out), "authoriz")) {
		t.Fatalf("kcat read %s without a grant: %v %s", resident, err, out)
	}

	// Health applies for some fields at grade 2; the authority approves, then
	// the source department (public security) approves, lowering nothing.
	var app control.Application
	if code := cc.call("health", "POST", "/v1/applications", control.Request{Item: resident, Purpose: "疫苗接种覆盖率统计",
		Fields: []string{"citizen_id", "name", "division_code", "phone"}, Grade: 2}, &app); code != http.StatusCreated {
		t.Fatalf("apply: %d", code)
	}
	if app.State != control.AuthorityReview {
		t.Fatalf("after applying: %s", app.State)
	}
	if code := cc.call("public_security", "POST", "/v1/applications/"+app.ID+"/approve", nil, &app); code != http.StatusForbidden {
		t.Fatalf("the source approved before the authority: %d", code)
	}
	if code := cc.call("big_data", "POST", "/v1/applications/"+app.ID+"/approve", control.Verdict{Reason: "用途正当"}, &app); code != 200 || app.State != control.SourceReview {
		t.Fatalf("authority approval: %d %s", code, app.State)
	}
	if code := cc.call("public_security", "POST", "/v1/applications/"+app.ID+"/approve", control.Verdict{}, &app); code != 200 || app.State != control.Granted {
		t.Fatalf("source approval: %d %s", code, app.State)
	}

	// Health now reads its projected feed: granted fields only, citizen IDs
	// (grade 3) and phones (grade 4) masked, birth dates (not granted) absent.
	got, err := readAll(t, b, cat, "health", resident, len(residents), "epidemic")
	if err != nil {
		t.Fatalf("health with a grant: %v", err)
	}
	masked := regexp.MustCompile(`^\d{6}\*{8}\d{3}[0-9X]$`)
	clear := map[string]bool{}
	byEventKey := map[string]string{} // event id -> clear key
	for _, e := range residents {
		clear[e.Key] = true
		byEventKey[e.ID] = e.Key
	}
	pseudonym := regexp.MustCompile(`^k[0-9a-f]{32}$`)
	keyOf := map[string]string{} // feed key -> an event id
	for _, d := range got {
		if !strings.HasPrefix(d.Topic, "_jutong.feed.health.") {
			t.Fatalf("delivered from %s, not from the feed", d.Topic)
		}
		id, _ := d.Event.Data["citizen_id"].(string)
		if !masked.MatchString(id) {
			t.Fatalf("citizen_id %q is not masked to its first 6 and last 4", id)
		}
		// The key is a pseudonym: one per citizen, never the masked form
		// (two citizens' masked IDs may look alike).
		if !pseudonym.MatchString(d.Event.Key) {
			t.Fatalf("the feed's key %q is not a pseudonym", d.Event.Key)
		}
		if prev, ok := keyOf[d.Event.Key]; ok && prev != d.Event.ID && byEventKey[prev] != byEventKey[d.Event.ID] {
			t.Fatalf("two citizens share the feed key %s", d.Event.Key)
		}
		keyOf[d.Event.Key] = d.Event.ID
		if _, ok := d.Event.Data["birth_date"]; ok {
			t.Fatal("birth_date was not granted but was delivered")
		}
		if ph, ok := d.Event.Data["phone"].(string); ok && strings.Trim(ph, "*0123456789") != "" {
			t.Fatalf("phone %q", ph)
		}
		if d.Event.Data["name"] == nil || d.Event.Data["division_code"] == nil {
			t.Fatal("a granted clear field is missing")
		}
	}
	// The unmasked values never reach health: not in any byte of its feed,
	// and the item's own topic stays closed to it (franz-go and kcat).
	feedTopic := got[0].Topic
	admin, _ := b.Kafka().Client(kgo.ConsumeTopics(feedTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	defer admin.Close()
	seen := 0
	for seen < len(residents) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fs := admin.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			t.Fatalf("the feed holds %d records, want %d", seen, len(residents))
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen++
			for id := range clear {
				if bytes.Contains(r.Value, []byte(id)) || bytes.Contains(r.Key, []byte(id)) {
					t.Fatalf("the clear citizen ID %s is in the feed", id)
				}
			}
		})
	}
	hp := cat.Department("health").Principal
	raw, _ := kafkaconn.Config{Brokers: b.Kafka().Brokers, User: hp, Password: b.Credentials[hp]}.Client(
		kgo.ConsumeTopics(resident), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	fs := raw.PollFetches(ctx)
	cancel()
	raw.Close()
	if err := fs.Err0(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("health read the raw topic with a masked grant: %v (%d records)", err, fs.NumRecords())
	}
	if out, err := kcat(t, b, cat, "health", "-C", "-t", feedTopic, "-o", "beginning", "-e", "-q", "-f", "%k\n"); withKcat && (err != nil || len(strings.Fields(out)) != len(residents)) {
		t.Fatalf("kcat on the feed: %v, %d keys", err, len(strings.Fields(out)))
	}
	if out, err := kcat(t, b, cat, "health", "-C", "-t", resident, "-o", "beginning", "-e", "-q"); withKcat && err == nil {
		t.Fatalf("kcat read the raw topic with a masked grant: %s", out)
	}

	// An unconditional item: the authority's review grants it whole, on the
	// item's own topic; tax reads it, until its grant expires.
	var tax control.Application
	cc.call("tax", "POST", "/v1/applications", control.Request{Item: enterprise, Purpose: "纳税信用评价", Until: clk.now().Add(48 * time.Hour)}, &tax)
	if code := cc.call("big_data", "POST", "/v1/applications/"+tax.ID+"/approve", control.Verdict{}, &tax); code != 200 || tax.State != control.Granted {
		t.Fatalf("unconditional: %d %s", code, tax.State)
	}
	if got, err := readAll(t, b, cat, "tax", enterprise, 100, "credit"); err != nil || got[0].Topic != enterprise {
		t.Fatalf("tax with a grant: %v", err)
	}
	if out, err := kcat(t, b, cat, "tax", "-C", "-t", enterprise, "-o", "beginning", "-e", "-q", "-f", "%k\n"); withKcat && (err != nil || len(strings.Fields(out)) != 100) {
		t.Fatalf("kcat as tax: %v %d", err, len(strings.Fields(out)))
	}

	// The reads are audited: per department, item and grant.
	evs, err := b.AuditReads(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reads := map[string]int64{}
	for _, e := range evs {
		reads[e.Department+" "+e.Item+" "+e.Grant] += e.Records
	}
	if reads["health "+resident+" "+app.ID] != int64(len(residents)) || reads["tax "+enterprise+" "+tax.ID] != 100 {
		t.Fatalf("audited reads: %v", reads)
	}

	// Expiry: two days on, tax's grant ends and its ACL goes.
	clk.add(49 * time.Hour)
	if err := b.Control.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, b, cat, "tax", enterprise, 1, "after-expiry"); !errors.Is(err, consumers.ErrNotAuthorized) {
		t.Fatalf("tax read after its grant expired: %v", err)
	}
	// Revocation: public security revokes health's grant; health is refused.
	if code := cc.call("public_security", "POST", "/v1/applications/"+app.ID+"/revoke", control.Verdict{Reason: "统计已完成"}, &app); code != 200 || app.State != control.Revoked {
		t.Fatalf("revoke: %d %s", code, app.State)
	}
	if out, err := kcat(t, b, cat, "health", "-C", "-t", feedTopic, "-o", "beginning", "-e", "-q"); withKcat && err == nil {
		t.Fatalf("kcat read the feed after revocation: %s", out)
	}
	// A department that is not the source cannot write the item (kcat).
	if out, err := kcatProduce(t, b, cat, "health", enterprise); withKcat && err == nil {
		t.Fatalf("health wrote %s: %s", enterprise, out)
	}

	// The audit trail lands in ClickHouse, where the authority asks who
	// read the item last week, under which grant.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).Query(context.Background(), `SELECT department, grant, sum(records) FROM audit
			WHERE kind = 'read' AND item = ? AND time >= now() - INTERVAL 7 DAY GROUP BY department, grant`, resident)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for rows.Next() {
			var dept, grant string
			var n int64
			if err := rows.Scan(&dept, &grant, &n); err != nil {
				t.Fatal(err)
			}
			found = found || (dept == "health" && grant == app.ID && n == int64(len(residents)))
		}
		rows.Close()
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the audit table does not say health read the residents under its grant")
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Every kind of fact is there (the copy runs on its own: wait for it).
	deadline = time.Now().Add(30 * time.Second)
	for {
		var kinds uint64
		err := testenv.ClickHouseConn(t, b.ClickHouseDSN()).QueryRow(context.Background(), `SELECT uniqExact(kind) FROM audit WHERE kind IN ('applied', 'decided', 'granted', 'revoked', 'expired', 'acl_added', 'acl_removed', 'read')`).Scan(&kinds)
		if err == nil && kinds == 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit kinds in ClickHouse: %d of 8 (%v)", kinds, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// kcatProduce tries to write one record to topic as dept.
func kcatProduce(t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept, topic string) (string, error) {
	t.Helper()
	p := cat.Department(dept).Principal
	cmd := exec.Command("kcat", "-b", strings.Join(b.Kafka().Brokers, ","), "-X", "security.protocol=SASL_PLAINTEXT",
		"-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username="+p, "-X", "sasl.password="+b.Credentials[p],
		"-P", "-t", topic)
	cmd.Stdin = strings.NewReader("forged\n")
	out, err := cmd.CombinedOutput()
	if err == nil && strings.Contains(strings.ToLower(string(out)), "authoriz") {
		err = errors.New("authorization failed")
	}
	return string(out), err
}
