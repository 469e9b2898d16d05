package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/gateway"
)

const item = "legal_person.enterprise_registration"

func startBus(t *testing.T) (*bus.Bus, *catalog.Catalog) {
	t.Helper()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b, cat
}

func post(t *testing.T, url, token, body string) (int, gateway.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r gateway.Response
	_ = json.Unmarshal(raw, &r)
	return resp.StatusCode, r, string(raw)
}

// line renders a generated event as the API takes it.
func line(t *testing.T, it *catalog.Item, e *schemas.Event) string {
	t.Helper()
	data, err := schemas.JSONValues(it, e.Data)
	if err != nil {
		t.Fatal(err)
	}
	if data == nil {
		data = []byte("null")
	}
	return fmt.Sprintf(`{"event_id":%q,"op":%q,"key":%q,"event_time":%q,"data":%s}`,
		e.ID, e.Op, e.Key, e.EventTime.Format(time.RFC3339Nano), data)
}

func count(t *testing.T, b *bus.Bus, topic string) int {
	t.Helper()
	cl, err := b.Kafka().Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			return n
		}
		n += fs.NumRecords()
	}
}

func TestGatewayToTheTopic(t *testing.T) {
	b, cat := startBus(t)
	it := cat.Item(item)
	url := b.APIURL() + "/v1/items/" + item + "/events"
	tok := b.Tokens["market_supervision"]
	gen := synth.New(it, 4, time.Now())
	var lines []string
	for i := 0; i < 50; i++ {
		lines = append(lines, line(t, it, gen.Next()))
	}
	bad := gen.Next()
	badLine := strings.Replace(line(t, it, bad), `"employees":`, `"employees":"many","x":`, 1)
	if bad.Data["employees"] == nil {
		badLine = strings.Replace(line(t, it, bad), `"employees":null`, `"employees":"many"`, 1)
	}
	lines = append(lines, "{not json", badLine)
	body := strings.Join(lines, "\n") + "\n"

	code, r, raw := post(t, url, tok, body)
	if code != 200 || r.Accepted != 50 || r.Rejected != 2 || r.Duplicate != 0 {
		t.Fatalf("first request: %d %s", code, raw)
	}
	if res := r.Results[50]; res.Status != "rejected" || res.Rule != "json.syntax" || res.Line != 51 {
		t.Errorf("a line that is not JSON: %+v", res)
	}
	if res := r.Results[51]; res.Status != "rejected" || res.Rule != "schema.type" || res.Field != "employees" {
		t.Errorf("a value of the wrong type: %+v", res)
	}
	if res := r.Results[0]; res.Status != "accepted" || res.Offset == nil || res.Partition == nil {
		t.Errorf("an accepted event: %+v", res)
	}
	// The client did not see the answer and retries: nothing twice.
	code, r, raw = post(t, url, tok, body)
	if code != 200 || r.Accepted != 0 || r.Duplicate != 50 || r.Rejected != 2 {
		t.Fatalf("retried request: %d %s", code, raw)
	}
	if n := count(t, b, item); n != 50 {
		t.Fatalf("the topic has %d records, want 50", n)
	}
	if n := count(t, b, producers.QuarantineTopic); n != 4 {
		t.Fatalf("the quarantine has %d records, want the 2 rejected lines of each request", n)
	}

	// Authentication, ownership, unknown items, limits.
	one := line(t, it, gen.Next())
	if code, _, _ := post(t, url, "", one); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _, _ := post(t, url, "wrong", one); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	if code, r, _ := post(t, url, b.Tokens["tax"], one); code != 200 || r.Rejected != 1 || r.Results[0].Rule != "source.owner" {
		t.Errorf("another department's token: %d %+v", code, r)
	}
	if code, _, _ := post(t, b.APIURL()+"/v1/items/legal_person.nothing/events", tok, one); code != 404 {
		t.Errorf("unknown item: %d", code)
	}
	huge := strings.Repeat(one+"\n", 10_001)
	if code, _, _ := post(t, url, tok, huge); code != 413 {
		t.Errorf("10,001 events: %d", code)
	}
	// The OpenAPI document is served.
	resp, err := http.Get(b.APIURL() + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(doc), "/v1/items/{code}/events") {
		t.Error("openapi.yaml not served")
	}
	// The metrics are served and count what happened.
	resp, err = http.Get(b.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`jutong_door_records_total{department="market_supervision",item="legal_person.enterprise_registration",outcome="accepted",path="gateway",rule=""} 50`,
		`jutong_door_records_total{department="market_supervision",item="legal_person.enterprise_registration",outcome="rejected",path="gateway",rule="json.syntax"} 2`,
		`jutong_gateway_requests_total{code="401"} 2`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestUnregistrableSchemaFailsTheRequest: when the item's schema cannot be
// registered (an admin's mistake replaced its subject with an incompatible
// schema; departments cannot write the registry), nothing can be published:
// the request fails as a whole with 503 and may be retried; it never
// answers 200 with results that say nothing.
func TestUnregistrableSchemaFailsTheRequest(t *testing.T) {
	b, cat := startBus(t)
	it := cat.Item(item)
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, how := range []sr.DeleteHow{sr.SoftDelete, sr.HardDelete} {
		if _, err := reg.DeleteSubject(ctx, it.Subject(), how); err != nil {
			t.Fatal(err)
		}
	}
	squat := `{"type":"record","name":"Squat","fields":[{"name":"x","type":"int"}]}`
	if _, err := reg.CreateSchema(ctx, it.Subject(), sr.Schema{Schema: squat, Type: sr.TypeAvro}); err != nil {
		t.Fatal(err)
	}
	gen := synth.New(it, 3, time.Now())
	code, resp, raw := post(t, b.APIURL()+"/v1/items/"+item+"/events", b.Tokens["market_supervision"], line(t, it, gen.Next()))
	if code != http.StatusServiceUnavailable || len(resp.Results) != 0 || !strings.Contains(raw, "register the schema") {
		t.Fatalf("want 503 naming the registration failure, got %d: %s", code, raw)
	}
	if n := count(t, b, item); n != 0 {
		t.Fatalf("%d records on the item's topic", n)
	}
}

// TestTextSizeAndRetries: NUL, invalid UTF-8 and an oversized line are each
// refused with their named rule and kept, in a 200 answering per line; the
// same request (a valid line and an oversized one) sent three times, and
// once more after the bus restarted, lands the valid event once in
// PostgreSQL and once in ClickHouse's history.
func TestTextSizeAndRetries(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := func() *bus.Bus {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true, DataDir: dir,
			AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
			PostgresDSN: pgDSN, ClickHouseDSN: chDSN, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start()
	it := cat.Item(item)
	gen := synth.New(it, 8, time.Now())
	gen.DeleteEvery = 0
	url := func() string { return b.APIURL() + "/v1/items/" + item + "/events" }
	tok := b.Tokens["market_supervision"]
	withName := func(name string) string {
		e := gen.Next()
		e.Data["name"] = name
		return line(t, it, e)
	}
	nul := withName("重庆\u0000公司") // the JSON escape \u0000
	nul = strings.Replace(nul, "\x00", `\u0000`, 1)
	badUTF8 := strings.Replace(withName("重庆PLACEHOLDER公司"), "PLACEHOLDER", "\xff\xfe", 1)
	huge := withName(strings.Repeat("大", 4<<20)) // 12 MiB of name
	// JSON escapes of lone UTF-16 surrogates: no character (Go's decoder
	// would store U+FFFD instead, silently).
	high := strings.Replace(withName("重庆PLACEHOLDER公司"), "PLACEHOLDER", `\ud800`, 1)
	low := strings.Replace(withName("重庆PLACEHOLDER公司"), "PLACEHOLDER", `\udcff`, 1)
	code, r, raw := post(t, url(), tok, strings.Join([]string{nul, badUTF8, huge, high, low}, "\n"))
	if code != 200 || r.Rejected != 5 {
		t.Fatalf("want 200 with five refusals, got %d: %.500s", code, raw)
	}
	for i, want := range []struct{ rule, field string }{{"text.nul", "name"}, {"text.utf8", "name"}, {"record.size", ""}, {"text.utf8", "name"}, {"text.utf8", "name"}} {
		if res := r.Results[i]; res.Status != "rejected" || res.Rule != want.rule || res.Field != want.field {
			t.Errorf("line %d: %+v, want rule %s field %q", i+1, res, want.rule, want.field)
		}
	}
	// Each is kept in the quarantine; the oversized one as its start and a SHA-256.
	var kept []quarantine.Record
	if err := kafkaconn.ReadAll(context.Background(), b.KafkaOpts(), quarantine.Topic, func(rec *kgo.Record) {
		var q quarantine.Record
		if json.Unmarshal(rec.Value, &q) == nil {
			kept = append(kept, q)
		}
	}); err != nil {
		t.Fatal(err)
	}
	// The quarantine has partitions: its records come back in no set order.
	var big *quarantine.Record
	for i := range kept {
		if kept[i].Rule == "record.size" {
			big = &kept[i]
		}
	}
	if len(kept) != 5 || big == nil || big.PayloadSHA256 == "" || big.PayloadSize < 12<<20 || len(big.Payload) == 0 {
		t.Fatalf("quarantine: %d records; the oversized one: %+v", len(kept), big)
	}

	// One valid line and one oversized, sent three times.
	valid := gen.Next()
	body := line(t, it, valid) + "\n" + huge + "\n"
	for i := 0; i < 3; i++ {
		code, r, raw := post(t, url(), tok, body)
		want := "accepted"
		if i > 0 {
			want = "duplicate"
		}
		if code != 200 || r.Results[0].Status != want || r.Results[1].Rule != "record.size" {
			t.Fatalf("attempt %d: %d %.300s", i+1, code, raw)
		}
	}
	b.Close(context.Background())
	b = start() // a restart of the bus: the door still knows the id
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	code, r, raw = post(t, url(), tok, body)
	if code != 200 || r.Results[0].Status != "duplicate" || r.Results[0].Offset == nil {
		t.Fatalf("after a restart: %d %.300s", code, raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var pgRows int
	if err := testenv.PostgresPool(t, pgDSN).QueryRow(ctx, "SELECT count(*) FROM legal_person.enterprise_registration WHERE _event_id = $1", valid.ID).Scan(&pgRows); err != nil || pgRows != 1 {
		t.Errorf("PostgreSQL holds the event %d times (%v)", pgRows, err)
	}
	var chRows uint64
	if err := testenv.ClickHouseConn(t, chDSN).QueryRow(ctx, "SELECT count() FROM events WHERE event_id = ?", valid.ID).Scan(&chRows); err != nil || chRows != 1 {
		t.Errorf("ClickHouse's history holds the event %d times (%v)", chRows, err)
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }
