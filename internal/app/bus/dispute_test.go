package bus_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/app/landing"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/sinks"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dispute"
	"github.com/jutong/jutong/server/lookup"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// TestDisputes: tax, which reads enterprise registrations, disputes one;
// tax reads it through a feed of its own (a subset of the fields); civil
// affairs disputing the same record and field joins it; health,
// which does not read the item, can neither dispute nor see it, and market
// supervision (the source) does not dispute its own. The record is
// flagged in PostgreSQL and in lookups until the source corrects it (in
// time); another dispute is rejected with a reason the raiser sees; a
// third goes overdue and is escalated once. Every step is audited.
func TestDisputes(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	clk := &clock{}
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN, Now: clk.now, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	cc := controlClient{t, b.APIURL(), b}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const item, purpose = "legal_person.enterprise_registration", "纳税信用评价"
	evs := publishItem(t, b, cat, item, 30, 51)
	// Tax is granted the fields it needs, so it reads a feed of its own.
	grant(t, cc, cat, "tax", control.Request{Item: item, Purpose: purpose, Grade: 4,
		Fields: []string{"uscc", "name", "registered_capital", "status", "division_code"}})
	grant(t, cc, cat, "civil_affairs", control.Request{Item: item, Purpose: "社会组织登记核查", Grade: 4})
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	key := evs[0].Key
	req := dispute.Request{Item: item, Key: key, Fields: []string{"registered_capital"}, Claim: "注册资本应为 500 万元", Evidence: "税务登记表"}

	var d dispute.Dispute
	if code := cc.call("tax", "POST", "/v1/disputes", req, &d); code != http.StatusCreated || d.State != dispute.Pending || d.Source != "market_supervision" || !d.Due.After(clk.now()) {
		t.Fatalf("tax raises: %d %+v", code, d)
	}
	var joined dispute.Dispute
	if code := cc.call("civil_affairs", "POST", "/v1/disputes", req, &joined); code != http.StatusCreated || joined.ID != d.ID || !slices.Contains(joined.Joined, "civil_affairs") {
		t.Fatalf("the same record and field: %d %+v, want to join %s", code, joined, d.ID)
	}
	if code := cc.call("health", "POST", "/v1/disputes", req, nil); code != http.StatusForbidden {
		t.Errorf("health, which does not read the item, disputed it: %d", code)
	}
	if code := cc.call("health", "GET", "/v1/disputes/"+d.ID, nil, nil); code != http.StatusNotFound {
		t.Errorf("health sees the dispute: %d", code)
	}
	var list []dispute.Dispute
	if code := cc.call("health", "GET", "/v1/disputes", nil, &list); code != 200 || len(list) != 0 {
		t.Errorf("health's list: %d %v", code, list)
	}
	if code := cc.call("market_supervision", "POST", "/v1/disputes", req, nil); code != http.StatusUnprocessableEntity {
		t.Errorf("the source disputed its own record: %d", code)
	}
	// A field outside tax's grant (it does not see it): refused.
	outside := req
	outside.Fields = []string{"legal_representative_id"}
	if code := cc.call("tax", "POST", "/v1/disputes", outside, nil); code != http.StatusForbidden {
		t.Errorf("tax disputed a field its grant does not deliver: %d", code)
	}

	// Flagged in PostgreSQL and in a lookup.
	flagged := func() int {
		var n int
		if err := testenv.PostgresPool(t, pgDSN).QueryRow(ctx, "SELECT count(*) FROM jutong.disputes_open WHERE item = $1 AND key = $2", item, key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := flagged(); n != 1 {
		t.Errorf("%d flags in PostgreSQL, want 1", n)
	}
	var viewIDs []string
	if err := testenv.PostgresPool(t, pgDSN).QueryRow(ctx, "SELECT dispute_ids FROM legal_person.enterprise_registration_disputed WHERE uscc = $1", key).Scan(&viewIDs); err != nil || len(viewIDs) != 1 || viewIDs[0] != d.ID {
		t.Errorf("the base database's flagged view: %v (%v), want [%s]", viewIDs, err, d.ID)
	}
	lookupFlag := func() []string {
		code, _, body := lookupAs(t, b, cat, "tax", "/v1/items/"+item+"/records/"+key, url.Values{"purpose": {purpose}})
		var ans struct{ Record struct{ Disputes []string } }
		if code != 200 || jsonUnmarshal(body, &ans) != nil {
			t.Fatalf("lookup: %d %s", code, body)
		}
		return ans.Record.Disputes
	}
	if ids := lookupFlag(); len(ids) != 1 || ids[0] != d.ID {
		t.Errorf("the lookup's flag: %v, want [%s]", ids, d.ID)
	}

	// In tax's feed and the SDK: tax read the record before the dispute;
	// the feed's flags topic flags it (with the disputed fields tax's grant
	// delivers), its next change comes flagged, and so does it in tax's
	// snapshot; in the theme databases too.
	pub, err := producers.New(ctx, cat, "market_supervision", b.Conn("market_supervision"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	touched := *evs[0]
	touched.ID, touched.Op, touched.Data = uuid.NewString(), schemas.OpUpdate, maps.Clone(evs[0].Data)
	if _, err := pub.Publish(ctx, item, &touched); err != nil {
		t.Fatal(err)
	}
	feedGot, err := readAll(t, b, cat, "tax", item, len(evs)+1, "disputes") // the changes, the next change
	if err != nil {
		t.Fatal(err)
	}
	var flaggedInFeed []string
	for _, dl := range feedGot {
		switch {
		case dl.Event.ID == touched.ID:
			flaggedInFeed = dl.Disputes
		case len(dl.Disputes) > 0:
			t.Errorf("a change published before the dispute, or of another record, is flagged: %s %v", dl.Event.Key, dl.Disputes)
		}
	}
	if fl := lastFlags(ctx, t, b, cat, "tax", item, func(fs map[string]consumers.Flag) bool { return len(fs[key].Disputes) == 1 }); len(fl) != 1 ||
		!slices.Equal(fl[key].Disputes, []string{d.ID}) || !slices.Equal(fl[key].Fields, []string{"registered_capital"}) ||
		!strings.HasPrefix(fl[key].Topic, "_jutong.flags.feed.tax.") {
		t.Errorf("tax's flags: %+v, want one, of %s, flagged by %s on registered_capital, on its feed's flags topic", fl, key, d.ID)
	}
	if !strings.HasPrefix(feedGot[0].Topic, "_jutong.feed.tax.") || len(flaggedInFeed) != 1 || flaggedInFeed[0] != d.ID {
		t.Errorf("tax's feed: the change of the disputed record carries %v, want [%s] (topic %s)", flaggedInFeed, d.ID, feedGot[0].Topic)
	}
	if snap := snapshotLines(ctx, t, b, cat, "tax", item, purpose); snap[key] == nil || len(snap[key].Disputes) != 1 || snap[key].Disputes[0] != d.ID {
		t.Errorf("tax's snapshot does not flag the disputed record: %+v", snap[key])
	}
	var themeIDs []string
	if err := testenv.PostgresPool(t, pgDSN).QueryRow(ctx, "SELECT dispute_ids FROM theme_financing.legal_person_enterprise_registration WHERE uscc = $1", key).Scan(&themeIDs); err != nil || len(themeIDs) != 1 {
		t.Errorf("the theme database's view: %v (%v)", themeIDs, err)
	}

	// Only the source answers; a rejection says why; a correction names its change.
	if code := cc.call("tax", "POST", "/v1/disputes/"+d.ID+"/correct", map[string]string{"event_id": "x"}, nil); code != http.StatusForbidden {
		t.Errorf("tax answered its own dispute: %d", code)
	}
	if code := cc.call("market_supervision", "POST", "/v1/disputes/"+d.ID+"/reject", map[string]string{}, nil); code != http.StatusUnprocessableEntity {
		t.Errorf("a rejection without a reason: %d", code)
	}
	// A correction naming a change of another record (the door accepted
	// it, so it knows which): refused, and the dispute stays open.
	var refusal struct{ Error, Field string }
	if code := cc.call("market_supervision", "POST", "/v1/disputes/"+d.ID+"/correct", map[string]string{"event_id": evs[1].ID}, &refusal); code != http.StatusUnprocessableEntity ||
		!strings.Contains(refusal.Error, "not of the disputed record") {
		t.Errorf("a correction by a change of another record: %d %+v", code, refusal)
	}
	if got, _ := b.Disputes.Get("tax", d.ID); got == nil || got.State != dispute.Pending {
		t.Errorf("after the refused correction: %+v", got)
	}
	// The source publishes the corrected record, then names the change: the
	// dispute closes once PostgreSQL and ClickHouse have landed it, with
	// their receipts; the flag stays until then.
	fixed := *evs[0]
	fixed.ID, fixed.Op = uuid.NewString(), schemas.OpUpdate
	fixed.Data = maps.Clone(evs[0].Data)
	fixed.Data["registered_capital"] = big.NewRat(500, 1)
	// The change names the dispute it corrects (through the door, as any change).
	if _, err := pub.PublishCorrection(ctx, item, d.ID, &fixed); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); d.State != dispute.Corrected && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := b.Disputes.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := b.Disputes.Get("tax", d.ID)
		if err != nil {
			t.Fatal(err)
		}
		d = *got
	}
	sinks := map[string]dispute.Receipt{}
	for _, r := range d.Receipts {
		sinks[r.Sink] = r
	}
	feedName := ""
	for name := range sinks {
		if strings.HasPrefix(name, "feed.tax.") {
			feedName = name
		}
	}
	if d.State != dispute.Corrected || d.Correction != fixed.ID || !d.InTime || len(sinks) != 3 || feedName == "" || sinks["postgres"].Offset != sinks["clickhouse"].Offset ||
		sinks[feedName].Offset != sinks["postgres"].Offset || sinks["postgres"].Landed.IsZero() {
		t.Fatalf("after the correction landed (PostgreSQL, ClickHouse and tax's feed): %+v", d)
	}
	if n := flagged(); n != 0 {
		t.Errorf("%d flags after the correction", n)
	}
	// The receipts come signed: tax verifies them offline with the bus's
	// public key; a byte changed fails.
	var signedD dispute.Dispute
	verifyDocument(t, b, "tax", "/v1/disputes/"+d.ID, &signedD)
	if len(signedD.Receipts) != 3 || signedD.State != dispute.Corrected {
		t.Errorf("the signed dispute: %+v", signedD)
	}
	// Tax's feed's flags topic clears the flag.
	if fl := lastFlags(ctx, t, b, cat, "tax", item, func(fs map[string]consumers.Flag) bool { return len(fs[key].Disputes) == 0 }); len(fl[key].Disputes) != 0 {
		t.Errorf("tax's flags still flag the corrected record: %+v", fl[key])
	}
	if ids := lookupFlag(); len(ids) != 0 {
		t.Errorf("the lookup still flags %v", ids)
	}
	// Civil affairs reads the item in clear (its own topic, no feed): the
	// item's flags topic tells it when the dispute opened and closed, and
	// the record's changes passed the door flagged.
	clearFlags(ctx, t, b, cat, "civil_affairs", item, key, d.ID, touched.ID, fixed.ID)
	// The item's topic and tax's feed carry only records of their
	// registered schemas (a standard Confluent deserializer reads every
	// one), and nothing was dead-lettered.
	onlyRegistered(ctx, t, b, cat.Item(item).Topic(), feedGot[0].Topic)
	if n := chCount(ctx, t, testenv.ClickHouseConn(t, chDSN), "SELECT count() FROM dead_letters"); n != 0 {
		t.Errorf("%d dead letters in ClickHouse", n)
	}

	// Rejected, with the reason, which the raiser reads.
	req2 := req
	req2.Fields, req2.Claim = []string{"status"}, "该企业已注销"
	var d2 dispute.Dispute
	cc.call("tax", "POST", "/v1/disputes", req2, &d2)
	if code := cc.call("market_supervision", "POST", "/v1/disputes/"+d2.ID+"/reject", map[string]string{"reason": "注销登记尚未办结"}, nil); code != 200 {
		t.Fatalf("reject: %d", code)
	}
	if code := cc.call("tax", "GET", "/v1/disputes/"+d2.ID, nil, &d2); code != 200 || d2.State != dispute.Rejected || d2.Reason != "注销登记尚未办结" {
		t.Errorf("tax reads the rejection: %d %+v", code, d2)
	}

	// Corrected through the HTTP gateway: the line names the dispute.
	req4 := req
	req4.Key = evs[2].Key
	var d4 dispute.Dispute
	cc.call("tax", "POST", "/v1/disputes", req4, &d4)
	data := map[string]any{}
	for k, v := range evs[2].Data {
		data[k] = schemas.PortableValue(cat.Item(item).Field(k), v)
	}
	data["registered_capital"] = "500.0000"
	lineID := uuid.NewString()
	body, _ := json.Marshal(map[string]any{"event_id": lineID, "op": "UPDATE", "key": evs[2].Key, "data": data, "corrects": d4.ID})
	greq, _ := http.NewRequest("POST", b.APIURL()+"/v1/items/"+item+"/events", bytes.NewReader(body))
	greq.Header.Set("Authorization", "Bearer "+b.Tokens["market_supervision"])
	if gresp, err := http.DefaultClient.Do(greq); err != nil || gresp.StatusCode != 200 {
		t.Fatalf("the gateway: %v %v", err, gresp)
	}
	for deadline := time.Now().Add(30 * time.Second); d4.State != dispute.Corrected && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := b.Disputes.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Disputes.Get("tax", d4.ID); err == nil {
			d4 = *got
		}
	}
	if d4.State != dispute.Corrected || d4.Correction != lineID {
		t.Errorf("a correction through the gateway: %+v", d4)
	}

	// Overdue: escalated once.
	req3 := req
	req3.Key = evs[1].Key
	var d3 dispute.Dispute
	cc.call("tax", "POST", "/v1/disputes", req3, &d3)
	// A change of another record naming it corrects nothing (it stays open
	// below); a publishing token does not reach the disputes.
	other := map[string]any{}
	for k, v := range evs[4].Data {
		other[k] = schemas.PortableValue(cat.Item(item).Field(k), v)
	}
	body, _ = json.Marshal(map[string]any{"event_id": uuid.NewString(), "op": "UPDATE", "key": evs[4].Key, "data": other, "corrects": d3.ID})
	greq, _ = http.NewRequest("POST", b.APIURL()+"/v1/items/"+item+"/events", bytes.NewReader(body))
	greq.Header.Set("Authorization", "Bearer "+b.Tokens["market_supervision"])
	if gresp, err := http.DefaultClient.Do(greq); err != nil || gresp.StatusCode != 200 {
		t.Fatalf("the gateway: %v %v", err, gresp)
	}
	preq, _ := http.NewRequest("GET", b.APIURL()+"/v1/disputes", nil)
	preq.Header.Set("Authorization", "Bearer "+b.Tokens["tax"])
	if presp, err := http.DefaultClient.Do(preq); err != nil || presp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a publishing token listed disputes: %v %v", err, presp)
	}
	clk.add(15 * 24 * time.Hour)
	for range 2 {
		if err := b.Disputes.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := b.Disputes.Get("tax", d3.ID); got == nil || !got.Escalated || got.State != dispute.Pending {
		t.Errorf("after its deadline: %+v", got)
	}

	ch := testenv.ClickHouseConn(t, chDSN)
	want := map[string]uint64{"dispute_raised": 4, "dispute_joined": 1, "dispute_correcting": 2, "dispute_corrected": 2, "dispute_rejected": 1, "dispute_escalated": 1}
	got := map[string]uint64{}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		rows, err := ch.Query(ctx, "SELECT kind, count() FROM audit WHERE kind LIKE 'dispute_%' GROUP BY kind")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k string
			var n uint64
			_ = rows.Scan(&k, &n)
			got[k] = n
		}
		rows.Close()
		if len(got) == len(want) && got["dispute_escalated"] >= 1 {
			break
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("audit %s: %d, want %d", k, got[k], n)
		}
	}

	// In ClickHouse: the record still disputed (the overdue one), and the
	// scorecard: four raised against market supervision, three resolved in
	// time, one open and overdue; four raised by tax.
	var openID string
	var against, by, open, inTime, overdue uint64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_ = ch.QueryRow(ctx, "SELECT any(dispute_ids[1]) FROM current_flagged WHERE item = ? AND key = ?", item, req3.Key).Scan(&openID)
		_ = ch.QueryRow(ctx, "SELECT raised_against, open, resolved_in_time, overdue FROM scorecard_disputes WHERE department = 'market_supervision'").Scan(&against, &open, &inTime, &overdue)
		_ = ch.QueryRow(ctx, "SELECT raised_by FROM scorecard_disputes WHERE department = 'tax'").Scan(&by)
		if openID == d3.ID && against == 4 && inTime == 3 && overdue == 1 {
			break
		}
	}
	if openID != d3.ID || against != 4 || open != 1 || inTime != 3 || overdue != 1 || by != 4 {
		t.Errorf("ClickHouse: open dispute %q (want %s); scorecard against %d, open %d, in time %d, overdue %d, by tax %d",
			openID, d3.ID, against, open, inTime, overdue, by)
	}
}

// clearFlags reads item in clear as dept, from the start, and checks what
// it says of the disputed record: on the item's flags topic, the dispute
// opened then closed; on the item's topic, the touched change and the
// correction flagged.
func clearFlags(ctx context.Context, t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept, item, key, id, touched, fixed string) {
	t.Helper()
	var flags, changes []string
	var flagOffsets []int64
	p := cat.Department(dept).Principal
	sub, err := consumers.New(ctx, cat, dept, []string{item}, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, consumers.Group("clear-flags"), consumers.OnFlag(func(_ context.Context, f consumers.Flag) error {
		if f.Key == key {
			flags = append(flags, "flag "+strings.Join(f.Disputes, ","))
			flagOffsets = append(flagOffsets, f.Offset)
			if f.Topic != topicname.Flags(cat.Item(item).Topic()) {
				t.Errorf("a flag on %s, not the item's flags topic", f.Topic)
			}
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if topic := sub.Topics()[item]; topic != cat.Item(item).Topic() {
		t.Fatalf("%s reads %s, not the item's own topic: the test needs a grant in clear", dept, topic)
	}
	rctx, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	err = sub.Run(rctx, func(_ context.Context, dl consumers.Delivery) error {
		switch {
		case dl.Event.ID == touched:
			changes = append(changes, "touched "+strings.Join(dl.Disputes, ","))
		case dl.Event.ID == fixed:
			changes = append(changes, "fixed "+strings.Join(dl.Disputes, ","))
		case len(dl.Disputes) > 0:
			t.Errorf("an undisputed change is flagged: %s %v", dl.Event.Key, dl.Disputes)
		}
		if len(changes) == 2 && len(flags) >= 2 {
			stop()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"flag " + id, "flag "}; !slices.Equal(flags, want) || !slices.IsSorted(flagOffsets) {
		t.Errorf("%s's flags in clear: %q at %v, want %q in order", dept, flags, flagOffsets, want)
	}
	if want := []string{"touched " + id, "fixed " + id}; !slices.Equal(changes, want) {
		t.Errorf("%s's changes in clear: %q, want %q", dept, changes, want)
	}
}

// lastFlags reads dept's flags of item (the flags topic of what it reads)
// from the start, as the SDK hands them to OnFlag, until done says the
// latest flag of each key is what the caller waits for, or 20 seconds pass.
func lastFlags(ctx context.Context, t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept, item string, done func(map[string]consumers.Flag) bool) map[string]consumers.Flag {
	t.Helper()
	rctx, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	last := map[string]consumers.Flag{}
	p := cat.Department(dept).Principal
	sub, err := consumers.New(ctx, cat, dept, []string{item}, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, consumers.Group("flags-"+uuid.NewString()[:8]), consumers.OnFlag(func(_ context.Context, f consumers.Flag) error {
		last[f.Key] = f
		if done(last) {
			stop()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Run(rctx, func(context.Context, consumers.Delivery) error { return nil }); err != nil {
		t.Fatal(err)
	}
	return last
}

// onlyRegistered reads each topic from the start, as the bus (raw bytes),
// and checks that every record is a Confluent-framed value under a schema
// registered for the topic's subject.
func onlyRegistered(ctx context.Context, t *testing.T, b *bus.Bus, topics ...string) {
	t.Helper()
	rc, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		ids := map[int]bool{}
		vs, err := rc.Schemas(ctx, topic+"-value")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			ids[v.ID] = true
		}
		n := 0
		if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topic, func(r *kgo.Record) {
			n++
			id, _, err := schemas.Unframe(r.Value)
			if err != nil || !ids[id] {
				t.Errorf("%s partition %d offset %d is not a record of its subject's schemas %v (schema id %d, %v): headers %v", topic, r.Partition, r.Offset, ids, id, err, r.Headers)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("%s is empty", topic)
		}
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// snapshotLines is a snapshot as dept's grant sees it, by key.
func snapshotLines(ctx context.Context, t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept, item, purpose string) map[string]*lookup.Record {
	t.Helper()
	p := cat.Department(dept).Principal
	req, _ := http.NewRequestWithContext(ctx, "GET", b.APIURL()+"/v1/items/"+item+"/snapshot?"+url.Values{"purpose": {purpose}}.Encode(), nil)
	req.SetBasicAuth(p, b.Credentials[p])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]*lookup.Record{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 0; sc.Scan(); line++ {
		var r lookup.Record
		if line == 0 || json.Unmarshal(sc.Bytes(), &r) != nil || r.Key == "" {
			continue
		}
		out[r.Key] = &r
	}
	return out
}

// TestFlagShownAfterACrash: a bus that saved a dispute and died before
// showing its flag (as if killed between the two writes) leaves it unshown
// in the disputes' topic; the next start shows it: the flag table in
// PostgreSQL and a flag record on the item's flags topic, then marks it
// shown.
func TestFlagShownAfterACrash(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const item = "legal_person.enterprise_registration"
	evs := publishItem(t, b, cat, item, 5, 7)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	key := evs[3].Key
	now := time.Now().UTC()
	left := dispute.Dispute{ID: "dsp-crashed", Request: dispute.Request{Item: item, Key: key, Fields: []string{"name"}, Claim: "名称有误"},
		RaisedBy: "tax", Source: "market_supervision", Raised: now, Due: now.Add(72 * time.Hour), State: dispute.Pending, Scheme: dispute.FlagScheme}
	v, _ := json.Marshal(left)
	cl, err := kgo.NewClient(b.KafkaOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: dispute.Topic, Key: []byte(left.ID), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The next start: the service loads the disputes and, at its first
	// tick, shows what is unshown.
	db := testenv.PostgresPool(t, pgDSN)
	svc, err := dispute.Open(ctx, dispute.Config{Catalog: cat, Kafka: b.KafkaOpts(), Registry: b.RegistryOpts(), DB: db, MayRead: func(string, string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM jutong.disputes_open WHERE dispute_id = $1 AND key = $2", left.ID, key).Scan(&n); err != nil || n != 1 {
		t.Errorf("PostgreSQL's flag table: %d rows (%v), want 1", n, err)
	}
	if got, err := svc.Get("tax", left.ID); err != nil || !got.FlagShown {
		t.Errorf("not marked shown: %+v %v", got, err)
	}
	// The flag record, on the item's flags topic.
	var f schemas.Flag
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topicname.Flags(cat.Item(item).Topic()), func(r *kgo.Record) {
		if string(r.Key) == key {
			f, err = schemas.DecodeFlag(r.Value)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err != nil || !slices.Equal(f.Disputes, []string{left.ID}) || !slices.Equal(f.Fields, []string{"name"}) {
		t.Errorf("the flag record: %+v %v", f, err)
	}
}

// TestLegacyFlagsUpgrade: disputes saved by a release that wrote flag
// records onto the items' topics move to the flags topics at the next
// start: each record's flag is written to its item's flags topic; on a
// compacted item topic the legacy flag record gets a tombstone in its own
// partition, which the sinks pass (compaction then removes both); on a
// topic that deletes by time nothing is written to it.
func TestLegacyFlagsUpgrade(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	cat := sample(t)
	const compacted, timed = "legal_person.enterprise_registration", "legal_person.tax_credit_rating"
	cat.Item(compacted).TopicSettings.CleanupPolicy = "compact"
	b := startBus(t, bus.Config{Catalog: cat, PostgresDSN: pgDSN, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys := map[string]string{}
	for _, item := range []string{compacted, timed} {
		keys[item] = publishItem(t, b, cat, item, 5, 11)[2].Key
	}
	cl, err := kgo.NewClient(append(b.KafkaOpts(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	legacyAt := map[string]int32{}
	now := time.Now().UTC()
	for item, key := range keys {
		d := dispute.Dispute{ID: "dsp-old-" + item[len("legal_person."):], Request: dispute.Request{Item: item, Key: key, Fields: []string{"name"}, Claim: "有误"},
			RaisedBy: "tax", Source: cat.Item(item).Source, Raised: now, Due: now.Add(72 * time.Hour), State: dispute.Pending, FlagShown: true}
		if item == timed {
			d.RaisedBy, d.Fields = "big_data", []string{"rating"}
		}
		v, _ := json.Marshal(d)
		// As the old release wrote it: a JSON flag record in the record's partition.
		part := int32(kgo.StickyKeyPartitioner(nil).ForTopic(item).Partition(&kgo.Record{Key: []byte(key)}, 6))
		legacyAt[item] = part
		flag, _ := json.Marshal(schemas.Flag{Item: item, Key: key, Disputes: []string{d.ID}, At: now})
		if err := cl.ProduceSync(ctx,
			&kgo.Record{Topic: dispute.Topic, Key: []byte(d.ID), Value: v},
			&kgo.Record{Topic: item, Partition: part, Key: schemas.LegacyFlagKey(key), Value: flag,
				Headers: []kgo.RecordHeader{{Key: schemas.HeaderKind, Value: []byte(schemas.KindFlag)}}},
		).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ends := func(topic string) int64 {
		adm := kadm.NewClient(cl)
		o, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		o.Each(func(l kadm.ListedOffset) { n += l.Offset })
		return n
	}
	timedBefore := ends(timed)

	svc, err := dispute.Open(ctx, dispute.Config{Catalog: cat, Kafka: b.KafkaOpts(), Registry: b.RegistryOpts(), DB: testenv.PostgresPool(t, pgDSN),
		MayRead: func(string, string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	for item, key := range keys {
		var f schemas.Flag
		if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topicname.Flags(item), func(r *kgo.Record) {
			if string(r.Key) == key {
				f, _ = schemas.DecodeFlag(r.Value)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if len(f.Disputes) != 1 || f.Key != key {
			t.Errorf("%s: the flags topic after the upgrade holds %+v", item, f)
		}
		if d, err := svc.Get("tax", "dsp-old-"+item[len("legal_person."):]); err == nil && (d.Scheme != dispute.FlagScheme || !d.FlagShown) {
			t.Errorf("%s: the dispute after the upgrade: %+v", item, d)
		}
	}
	var tomb *kgo.Record
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), compacted, func(r *kgo.Record) {
		if string(r.Key) == string(schemas.LegacyFlagKey(keys[compacted])) && r.Value == nil {
			tomb = r
		}
	}); err != nil {
		t.Fatal(err)
	}
	if tomb == nil || tomb.Partition != legacyAt[compacted] || !pipeline.IsLegacyFlag(tomb) {
		t.Errorf("the compacted topic's tombstone over the legacy flag record: %+v (the record is in partition %d)", tomb, legacyAt[compacted])
	}
	if n := ends(timed); n != timedBefore {
		t.Errorf("the upgrade wrote %d records to %s, which deletes by time only", n-timedBefore, timed)
	}
	// The sinks passed the legacy records and the tombstone.
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ends(pipeline.DeadLetterTopic); n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// TestCorrectionOfAnotherRecordOnceLanded: a bus instance whose door does
// not know the change a correction names (another instance accepted it)
// learns which record it is of when it lands: a change of another record is
// refused then (with the audit event dispute_correction_refused where the
// service audits), and the dispute waits on the source again.
func TestCorrectionOfAnotherRecordOnceLanded(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const item = "legal_person.enterprise_registration"
	evs := publishItem(t, b, cat, item, 4, 21)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// The sinks as another instance opens them, to ask them what they hold.
	var held []pipeline.Sink
	for kind, dsn := range map[string]string{"postgres": pgDSN, "clickhouse": chDSN} {
		s, err := sinks.Open(ctx, kind, sinks.Options{DSN: dsn, Catalog: cat})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		held = append(held, s)
	}
	land := landing.New(landing.Config{Catalog: cat, Kafka: b.KafkaOpts(), Sinks: func(*catalog.Item) []pipeline.Sink { return held }})
	svc, err := dispute.Open(ctx, dispute.Config{Catalog: cat, Kafka: b.KafkaOpts(), Registry: b.RegistryOpts(), Landing: land.Receipts,
		MayRead: func(string, string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	d, err := svc.Raise(ctx, "tax", dispute.Request{Item: item, Key: evs[0].Key, Fields: []string{"name"}, Claim: "名称有误"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.Correct(ctx, d.ID, "market_supervision", evs[1].ID) // landed, as a change of evs[1]'s record
	var re *dispute.RequestError
	if !errors.As(err, &re) || re.Field != "event_id" || !strings.Contains(re.Reason, "not of the disputed record") {
		t.Fatalf("a correction by a landed change of another record: %v", err)
	}
	if got, _ := svc.Get("tax", d.ID); got == nil || got.State != dispute.Pending || got.Correction != "" || len(got.Receipts) != 0 {
		t.Errorf("the dispute after the refusal: %+v", got)
	}
	// The source's own record, corrected: accepted.
	if got, err := svc.Correct(ctx, d.ID, "market_supervision", evs[0].ID); err != nil || got.State != dispute.Corrected {
		t.Errorf("a correction by a change of the disputed record: %+v %v", got, err)
	}
}
