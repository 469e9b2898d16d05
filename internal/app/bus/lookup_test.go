package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/lookup"
)

// lookupAs calls the lookup API as dept (its principal and Kafka password).
func lookupAs(t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept, path string, q url.Values) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", b.APIURL()+path+"?"+q.Encode(), nil)
	if dept != "" {
		p := cat.Department(dept).Principal
		req.SetBasicAuth(p, b.Credentials[p])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// grant has dept apply for item and the reviewers approve it.
func grant(t *testing.T, cc controlClient, cat *catalog.Catalog, dept string, r control.Request) control.Application {
	t.Helper()
	var app control.Application
	if code := cc.call(dept, "POST", "/v1/applications", r, &app); code != http.StatusCreated {
		t.Fatalf("%s applies for %s: %d", dept, r.Item, code)
	}
	for _, by := range []string{cat.Authority, cat.Item(r.Item).Source} {
		if app.State == control.Granted {
			break
		}
		if code := cc.call(by, "POST", "/v1/applications/"+app.ID+"/approve", control.Verdict{Reason: "同意"}, &app); code != 200 {
			t.Fatalf("%s approves %s: %d", by, app.ID, code)
		}
	}
	if app.State != control.Granted {
		t.Fatalf("%s's application for %s: %s", dept, r.Item, app.State)
	}
	return app
}

// TestLookups: through the HTTP API, as three departments. Health, granted
// residents at grade 2, gets each record exactly as its masked feed shows
// it, with its provenance, and 404 for a key that is not there; tax, with
// no grant on residents, gets 403 naming what is missing; civil affairs,
// over its grant's rate, gets 429 with Retry-After; a wrong purpose is
// refused. Enterprises are found by a lookup field, paged with cursors that
// do not show the key. Every call is in ClickHouse's audit table once.
func TestLookups(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	cc := controlClient{t, b.APIURL(), b}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const resident, enterprise = "population.resident_registration", "legal_person.enterprise_registration"
	const purpose = "疫苗接种覆盖率统计"
	residents := publishItem(t, b, cat, resident, 60, 21)
	// Three enterprises share a legal representative (a lookup field).
	it := cat.Item(enterprise)
	rep := residents[0].Data["citizen_id"].(string)
	pub, err := producers.New(ctx, cat, it.Source, b.Conn(it.Source))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	gen := synth.New(it, 23, time.Now())
	gen.DeleteEvery = 0
	var shared []*schemas.Event
	sharedKeys := map[string]bool{}
	for i := range 20 {
		e := gen.Next()
		if i < 3 && !sharedKeys[e.Key] {
			sharedKeys[e.Key] = true
			shared = append(shared, e)
		}
		if sharedKeys[e.Key] { // an update of one keeps the representative
			e.Data["legal_representative_id"] = rep
		}
		if _, err := pub.Publish(ctx, enterprise, e); err != nil {
			t.Fatal(err)
		}
	}
	health := grant(t, cc, cat, "health", control.Request{Item: resident, Purpose: purpose, Fields: []string{"citizen_id", "name", "division_code", "phone"}, Grade: 2})
	grant(t, cc, cat, "civil_affairs", control.Request{Item: resident, Purpose: "低保核查", Grade: 4, LookupRate: 1})
	taxEnt := grant(t, cc, cat, "tax", control.Request{Item: enterprise, Purpose: "纳税信用评价", Grade: 4})
	// Two grants that do not see the legal representative's id in clear:
	// above health's grade, outside development and reform's fields.
	grant(t, cc, cat, "health", control.Request{Item: enterprise, Purpose: "医疗机构登记核查", Grade: 2})
	grant(t, cc, cat, "development_reform", control.Request{Item: enterprise, Purpose: "项目单位核查", Grade: 4, Fields: []string{"uscc", "name", "status"}})
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	calls := 0 // answered calls, each to be audited once

	// Health sees each record as its feed shows it.
	feedRecs, err := readAll(t, b, cat, "health", resident, len(residents), "lookups")
	if err != nil {
		t.Fatal(err)
	}
	byEvent := map[string]map[string]any{}
	for _, d := range feedRecs {
		m := map[string]any{}
		for k, v := range d.Event.Data {
			m[k] = schemas.PortableValue(d.Item.Field(k), v)
		}
		byEvent[d.Event.ID] = m
	}
	keys := map[string]bool{}
	for _, e := range residents {
		key := e.Data["citizen_id"].(string)
		if keys[key] {
			continue
		}
		keys[key] = true
		code, _, body := lookupAs(t, b, cat, "health", "/v1/items/"+resident+"/records/"+key, url.Values{"purpose": {purpose}})
		calls++
		if code != 200 {
			t.Fatalf("health looks %s up: %d %s", key, code, body)
		}
		var ans struct {
			Grant  string
			Record lookup.Record
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			t.Fatal(err)
		}
		r := ans.Record
		if ans.Grant != health.ID || r.Provenance.Source != "public_security" || r.Provenance.Topic != resident || r.Provenance.PublishTime.IsZero() {
			t.Errorf("provenance: %+v (grant %s)", r.Provenance, ans.Grant)
		}
		want, ok := byEvent[r.Provenance.EventID]
		if !ok {
			t.Fatalf("the looked-up record's event %s is not in health's feed", r.Provenance.EventID)
		}
		if fmt.Sprint(r.Data) != fmt.Sprint(want) {
			t.Errorf("lookup %v\n   feed %v", r.Data, want)
		}
		if strings.Contains(string(body), key) || r.Key == key {
			t.Errorf("the clear citizen id (grade 3) is in health's answer: %s", body)
		}
		if _, has := r.Data["birth_date"]; has {
			t.Errorf("a field not granted was answered: %v", r.Data)
		}
		if calls >= 8 {
			break
		}
	}
	// The same record in Avro, on request: the feed's registered schema,
	// the same masked values and key.
	avroKey := residents[0].Data["citizen_id"].(string)
	_, _, jsonBody := lookupAs(t, b, cat, "health", "/v1/items/"+resident+"/records/"+avroKey, url.Values{"purpose": {purpose}})
	calls++
	var asJSON struct{ Record lookup.Record }
	if err := json.Unmarshal(jsonBody, &asJSON); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", b.APIURL()+"/v1/items/"+resident+"/records/"+avroKey+"?"+url.Values{"purpose": {purpose}}.Encode(), nil)
	req.Header.Set("Accept", lookup.AvroType)
	hp := cat.Department("health").Principal
	req.SetBasicAuth(hp, b.Credentials[hp])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	framed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	calls++
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != lookup.AvroType {
		t.Fatalf("Avro lookup: %d %s", resp.StatusCode, framed)
	}
	id, body, err := schemas.Unframe(framed)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := sr.NewClient(sr.URLs(b.RegistryURL()), sr.BasicAuth(hp, b.Credentials[hp])) // a department reads the registry
	if err != nil {
		t.Fatal(err)
	}
	writer, err := reg.SchemaByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := avro.Parse(writer.Schema)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := avro.Unmarshal(ws, body, &decoded); err != nil {
		t.Fatal(err)
	}
	data, _ := decoded["data"].(map[string]any)
	for _, v := range data { // the union's branch, by its name
		data, _ = v.(map[string]any)
	}
	if decoded["key"] != asJSON.Record.Key || data == nil || fmt.Sprint(data["citizen_id"]) != fmt.Sprint(asJSON.Record.Data["citizen_id"]) ||
		fmt.Sprint(data["name"]) != fmt.Sprint(asJSON.Record.Data["name"]) {
		t.Errorf("Avro %v\n JSON %v", decoded, asJSON.Record)
	}

	// 404 for a key that is not there, saying nothing else.
	code, _, body := lookupAs(t, b, cat, "health", "/v1/items/"+resident+"/records/110101190001010000", url.Values{"purpose": {purpose}})
	calls++
	if code != 404 || strings.Contains(string(body), "110101") {
		t.Errorf("a missing key: %d %s", code, body)
	}
	// Refusals: no credentials, a wrong purpose, no grant.
	if code, _, _ := lookupAs(t, b, cat, "", "/v1/items/"+resident+"/records/"+rep, url.Values{"purpose": {purpose}}); code != 401 {
		t.Errorf("no credentials: %d", code)
	}
	if code, _, body := lookupAs(t, b, cat, "health", "/v1/items/"+resident+"/records/"+rep, url.Values{"purpose": {"商业营销"}}); code != 403 || !strings.Contains(string(body), health.ID) {
		t.Errorf("a wrong purpose: %d %s", code, body)
	}
	if code, _, body := lookupAs(t, b, cat, "tax", "/v1/items/"+resident+"/records/"+rep, url.Values{"purpose": {purpose}}); code != 403 || !strings.Contains(string(body), "tax has no active grant on "+resident) {
		t.Errorf("no grant: %d %s", code, body)
	}
	// Civil affairs' grant allows one lookup a second.
	limited := 0
	for range 5 {
		code, h, _ := lookupAs(t, b, cat, "civil_affairs", "/v1/items/"+resident+"/records/"+rep, url.Values{"purpose": {"低保核查"}})
		switch code {
		case 200:
			calls++
		case 429:
			limited++
			if h.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		default:
			t.Errorf("civil affairs: %d", code)
		}
	}
	if limited < 3 {
		t.Errorf("%d of 5 calls in a burst were limited at one a second", limited)
	}

	// Tax finds the three enterprises by their legal representative, a page at a time.
	seen := map[string]bool{}
	after := ""
	for page := 0; page < 5; page++ {
		q := url.Values{"purpose": {"纳税信用评价"}, "field": {"legal_representative_id"}, "value": {rep}, "limit": {"1"}}
		if after != "" {
			q.Set("after", after)
		}
		code, _, body := lookupAs(t, b, cat, "tax", "/v1/items/"+enterprise+"/records", q)
		calls++
		var ans struct {
			Grant   string
			Records []lookup.Record
			Next    string
		}
		if code != 200 || json.Unmarshal(body, &ans) != nil || ans.Grant != taxEnt.ID {
			t.Fatalf("page %d: %d %s", page, code, body)
		}
		for _, r := range ans.Records {
			seen[r.Key] = true
			if ans.Next != "" && strings.Contains(ans.Next, r.Key) {
				t.Errorf("the cursor shows the key")
			}
		}
		if after = ans.Next; after == "" {
			break
		}
	}
	for _, e := range shared {
		if !seen[e.Key] {
			t.Errorf("enterprise %s (legal representative %s) not found by the lookup field", e.Key, rep)
		}
	}
	if len(seen) != len(shared) {
		t.Errorf("found %d enterprises, want %d", len(seen), len(shared))
	}
	if code, _, _ := lookupAs(t, b, cat, "tax", "/v1/items/"+enterprise+"/records", url.Values{"purpose": {"纳税信用评价"}, "field": {"name"}, "value": {"x"}}); code != 400 {
		t.Errorf("a field that is not a lookup field: %d", code)
	}
	// A lookup by a field the grant masks or drops would say which
	// enterprises the person represents: refused, naming the field, and
	// audited as refused.
	for dept, why := range map[string]string{"health": "above the grant's grade", "development_reform": "not among the grant's fields"} {
		purpose := map[string]string{"health": "医疗机构登记核查", "development_reform": "项目单位核查"}[dept]
		code, _, body := lookupAs(t, b, cat, dept, "/v1/items/"+enterprise+"/records", url.Values{"purpose": {purpose}, "field": {"legal_representative_id"}, "value": {rep}})
		if code != 403 || !strings.Contains(string(body), "legal_representative_id") || !strings.Contains(string(body), why) || strings.Contains(string(body), shared[0].Key) {
			t.Errorf("%s looks enterprises up by a field it does not see: %d %s", dept, code, body)
		}
	}

	// Each answered call is in ClickHouse's audit table once; the refusals
	// for a grant or a purpose too.
	ch := testenv.ClickHouseConn(t, chDSN)
	var lookups, refused, withRep uint64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_ = ch.QueryRow(ctx, "SELECT countIf(kind = 'lookup'), countIf(kind = 'lookup_refused'), countIf(kind = 'lookup' AND has(keys, 'legal_representative_id="+rep+"')) FROM audit").Scan(&lookups, &refused, &withRep)
		if int(lookups) >= calls && refused >= 4 {
			break
		}
	}
	if int(lookups) != calls || refused != 4 || withRep == 0 {
		t.Errorf("audit: %d lookups (want %d), %d refused (want 4), %d by the representative", lookups, calls, refused, withRep)
	}
	var purposeOK uint64
	_ = ch.QueryRow(ctx, "SELECT count() FROM audit WHERE kind = 'lookup' AND department = 'health' AND grant = ? AND purpose = ?", health.ID, purpose).Scan(&purposeOK)
	if purposeOK == 0 {
		t.Error("health's lookups are not audited with their grant and purpose")
	}
}
