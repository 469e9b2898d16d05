package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/app/federation"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/model/upstream"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/bridge"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dispute"
)

// TestFederationBridge: a city bus and a district bus in one process. The
// district applies on the city for residents (some fields, grade 2: the
// citizen ID masked) and the bridge carries the city's masked feed into
// the district's door: every record lands once in the district's
// PostgreSQL, masked, with its provenance. Hostile: the city's bridge
// principal passing off another bus's records, a district department
// writing the received item, and a record no longer fitting the item (an
// upstream change it does not accept) are refused and kept with their
// rules; a revoked upstream grant stops the flow and the bridge says so; a
// bridge with a wrong credential does not start.
func TestFederationBridge(t *testing.T) {
	const resident, enterprise, abnormal = "population.resident_registration", "legal_person.enterprise_registration", "legal_person.abnormal_operation"
	dir := t.TempDir()
	cityDir, distDir := dir+"/city", dir+"/a"
	if err := federation.WriteCity(cityDir, nil, []string{"a"}, 0); err != nil {
		t.Fatal(err)
	}
	cityCat, err := catalog.Load(os.DirFS(cityDir))
	if err != nil {
		t.Fatal(err)
	}
	fields := []string{"citizen_id", "name", "gender", "birth_date", "division_code"}
	if err := federation.WriteDistrict(distDir, cityCat, "a", []federation.Receive{{Item: resident, Fields: fields, Grade: 2},
		{Item: enterprise, Grade: 4},
		// The district declares fewer fields than the city delivers (an
		// upstream change it has not taken): kept, not applied.
		{Item: abnormal, Fields: []string{"uscc", "name", "reason", "listed_on"}, Grade: 4},
		// Declared, never granted on the city: the bridge says so.
		{Item: "license.business_license", Grade: 4}}); err != nil {
		t.Fatal(err)
	}
	distCat, err := catalog.Load(os.DirFS(distDir))
	if err != nil {
		t.Fatal(err)
	}
	city := startBus(t, bus.Config{Catalog: cityCat, PostgresDSN: testenv.Postgres(t), ClickHouseDSN: testenv.ClickHouse(t), ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = city.Close(context.Background()) })
	dist := startBus(t, bus.Config{Catalog: distCat, PostgresDSN: testenv.Postgres(t), ClickHouseDSN: testenv.ClickHouse(t), ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = dist.Close(context.Background()) })

	residents := publishItem(t, city, cityCat, resident, 120, 25)
	cc := controlClient{t, city.APIURL(), city}
	app := grant(t, cc, cityCat, federation.DistrictDepartment("a"), control.Request{Item: resident, Purpose: "区级民政业务办理", Fields: fields, Grade: 2})
	enterprises := publishItem(t, city, cityCat, enterprise, 5, 27)
	grant(t, cc, cityCat, federation.DistrictDepartment("a"), control.Request{Item: enterprise, Purpose: "区级市场主体服务"})
	abnormals := publishItem(t, city, cityCat, abnormal, 4, 28)
	grant(t, cc, cityCat, federation.DistrictDepartment("a"), control.Request{Item: abnormal, Purpose: "区级信用监管"})
	// Granted on the city, declared by no item of the district: not read.
	publishItem(t, city, cityCat, "legal_person.social_organization", 3, 29)
	grant(t, cc, cityCat, federation.DistrictDepartment("a"), control.Request{Item: "legal_person.social_organization", Purpose: "区级社会组织管理"})

	newBridge := func(pass string, reg prometheus.Registerer) (*bridge.Bridge, error) {
		dp, up := distCat.Department(federation.CityDepartment).Principal, cityCat.Department(federation.DistrictDepartment("a")).Principal
		if pass == "" {
			pass = city.Credentials[up]
		}
		return bridge.New(context.Background(), bridge.Config{
			Catalog: distCat, Department: federation.CityDepartment, UpstreamDepartment: federation.DistrictDepartment("a"),
			Downstream: connect.Config{Brokers: dist.Kafka().Brokers, User: dp, Password: dist.Credentials[dp], Registry: dist.RegistryURL()},
			Upstream:   connect.Config{Brokers: city.Kafka().Brokers, User: up, Password: pass, Registry: city.RegistryURL()},
			Rediscover: time.Second, Logger: testenv.Logger(t), Registerer: reg,
			Officers: &bridge.Officers{Every: 300 * time.Millisecond,
				UpstreamAPI: city.APIURL(), UpstreamToken: city.Officers[federation.DistrictDepartment("a")],
				DownstreamAPI: dist.APIURL(), DownstreamToken: dist.Officers[federation.CityDepartment]},
		})
	}
	// A revoked (or wrong) credential: the bridge does not start.
	if _, err := newBridge("not-the-password", nil); err == nil {
		t.Fatal("a bridge with a wrong upstream password started")
	}
	reg := prometheus.NewRegistry()
	br, err := newBridge("", reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; br.Close() })
	// A real Prometheus scrapes the bridge (as job jutong-bridge would).
	metricsSrv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	t.Cleanup(metricsSrv.Close)
	prom := testenv.Prometheus(t, strings.TrimPrefix(metricsSrv.URL, "http://"), "")

	// Every resident lands once in the district, masked, with provenance.
	pg, err := pgx.Connect(context.Background(), dist.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	clear := map[string]bool{}
	for _, e := range residents {
		clear[e.Data["citizen_id"].(string)] = true
	}
	waitRows(t, pg, `SELECT count(*) FROM population.resident_registration`, len(clear))
	// And every change once in the district's ClickHouse.
	ch := testenv.ClickHouseConn(t, dist.ClickHouseDSN())
	deadline := time.Now().Add(time.Minute)
	for {
		var n, uniq uint64
		if err := ch.QueryRow(context.Background(), `SELECT count(), uniqExact(event_id) FROM events WHERE item = ?`, resident).Scan(&n, &uniq); err != nil {
			t.Fatal(err)
		}
		if n == uint64(len(residents)) && uniq == n {
			break
		}
		if time.Now().After(deadline) || n > uint64(len(residents)) {
			t.Fatalf("the district's ClickHouse: %d events (%d distinct), want %d", n, uniq, len(residents))
		}
		time.Sleep(300 * time.Millisecond)
	}
	rows, err := pg.Query(context.Background(), `SELECT citizen_id, name, upstream FROM population.resident_registration`)
	if err != nil {
		t.Fatal(err)
	}
	offsets := map[string]bool{}
	for rows.Next() {
		var id, name, prov string
		if err := rows.Scan(&id, &name, &prov); err != nil {
			t.Fatal(err)
		}
		if clear[id] {
			t.Fatalf("the clear citizen ID %s reached the district", id)
		}
		p, err := upstream.Parse(prov)
		if err != nil || p.Bus != federation.CityBus || p.Department != "public_security" || p.Item != resident || !strings.Contains(p.Topic, app.ID) {
			t.Fatalf("provenance %q: %+v %v", prov, p, err)
		}
		offsets[p.String()] = true
	}
	if rows.Err() != nil || len(offsets) != len(clear) {
		t.Fatalf("distinct provenances %d of %d: %v", len(offsets), len(clear), rows.Err())
	}
	waitRows(t, pg, `SELECT count(*) FROM legal_person.enterprise_registration`, distinctKeys(enterprises))
	if got := sumSeries(t, reg, "jutong_bridge_records_total", "outcome", "forwarded"); got != float64(len(residents)+len(enterprises)) {
		t.Fatalf("forwarded %v", got)
	}

	// The city's audit attributes the bridge's reads to the district's
	// grant, as any department's.
	deadline = time.Now().Add(30 * time.Second)
	for {
		evs, err := city.AuditReads(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var read int64
		for _, e := range evs {
			if e.Department == federation.DistrictDepartment("a") && e.Item == resident && e.Grant == app.ID {
				read += e.Records
			}
		}
		if read > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audited read of the district's grant: %+v", evs)
		}
		time.Sleep(time.Second)
	}

	// Hostile: the city's bridge principal claims another bus's record, and
	// a district department writes the received item.
	it := distCat.Item(resident)
	dp := distCat.Department(federation.CityDepartment).Principal
	forger, err := producers.New(context.Background(), distCat, federation.CityDepartment, connect.Config{Brokers: dist.Kafka().Brokers, User: dp, Password: dist.Credentials[dp], Registry: dist.RegistryURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	forged := receivedEvent(it, "00000000-0000-4000-8000-00000000f001", upstream.Provenance{Bus: "chengdu", Department: "public_security", Item: resident, Topic: "x", Partition: 0, Offset: 1}.String())
	if res, _ := forger.Publish(context.Background(), resident, forged); !isRule(res[0].Err, rules.UpstreamProvenance) {
		t.Fatalf("a forged provenance: %v", res[0].Err)
	}
	// The same with a raw franz-go client, past the SDK's own check: a
	// record well encoded under the item's registered schema, claiming
	// another upstream item; the door itself refuses it.
	rawForged := receivedEvent(it, "00000000-0000-4000-8000-00000000f003", upstream.Provenance{Bus: federation.CityBus, Department: "public_security", Item: "population.deaths", Topic: "x", Partition: 0, Offset: 2}.String())
	rawForged.Source, rawForged.EventTime, rawForged.PublishTime = schemas.Source{Department: federation.CityDepartment}, time.Now(), time.Now()
	sch, err := schemas.For(it)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sr.NewClient(sr.URLs(dist.RegistryURL()), sr.BasicAuth(dp, dist.Credentials[dp]))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := rc.LookupSchema(context.Background(), it.Subject(), sr.Schema{Schema: sch.JSON, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := sch.Encode(rawForged)
	if err != nil {
		t.Fatal(err)
	}
	rawCl, err := kafkaconn.Config{Brokers: dist.Kafka().Brokers, User: dp, Password: dist.Credentials[dp]}.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := rawCl.ProduceSync(context.Background(), &kgo.Record{Topic: topicname.Inbox(federation.CityDepartment), Key: []byte(rawForged.Key),
		Value: schemas.Frame(nil, ss.ID, payload), Headers: []kgo.RecordHeader{{Key: inbox.HeaderItem, Value: []byte(resident)}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rawCl.Close()
	civil := distCat.Department("civil_affairs").Principal
	other, err := producers.New(context.Background(), distCat, "civil_affairs", connect.Config{Brokers: dist.Kafka().Brokers, User: civil, Password: dist.Credentials[civil], Registry: dist.RegistryURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	own := receivedEvent(it, "00000000-0000-4000-8000-00000000f002", upstream.Provenance{Bus: federation.CityBus, Department: "public_security", Item: resident, Topic: "x", Partition: 0, Offset: 1}.String())
	if res, _ := other.Publish(context.Background(), resident, own); !isRule(res[0].Err, rules.SourceOwner) {
		t.Fatalf("a district department writing the received item: %v", res[0].Err)
	}
	// All are kept in the district's quarantine, with their rules, and so
	// are the records that do not fit the item here; none reached the
	// item's topic.
	kept := quarantined(t, dist, 3+len(abnormals))
	if kept[rules.UpstreamProvenance] != 2 || kept[rules.SourceOwner] != 1 || kept[rules.UpstreamSchema] != len(abnormals) {
		t.Fatalf("kept: %v", kept)
	}
	if err := kafkaconn.ReadAll(context.Background(), dist.KafkaOpts(), resident, func(r *kgo.Record) {
		if strings.Contains(string(r.Value), "00000000-0000-4000-8000-00000000f00") {
			t.Errorf("a refused record reached %s at offset %d", resident, r.Offset)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if got := sumSeries(t, reg, "jutong_bridge_records_total", "outcome", "kept"); got != float64(len(abnormals)) {
		t.Fatalf("kept %v", got)
	}

	// A dispute raised in the district reaches the city's source through the
	// bridge; its correction flows back down and closes the district's
	// dispute with the district's receipts.
	distCC := controlClient{t, dist.APIURL(), dist}
	grant(t, distCC, distCat, "civil_affairs", control.Request{Item: enterprise, Purpose: "社会救助对象经营情况核查"})
	target := enterprises[0]
	var raised dispute.Dispute
	if code := distCC.call("civil_affairs", "POST", "/v1/disputes", dispute.Request{Item: enterprise, Key: target.Key, Fields: []string{"name"}, Claim: "企业名称应为变更后名称"}, &raised); code != 201 && code != 200 {
		t.Fatalf("raise in the district: %d", code)
	}
	var up dispute.Dispute
	deadline = time.Now().Add(time.Minute)
	for up.ID == "" {
		var list []dispute.Dispute
		cc.call("market_supervision", "GET", "/v1/disputes", nil, &list)
		for _, d := range list {
			if d.Key == target.Key && d.RaisedBy == federation.DistrictDepartment("a") && strings.Contains(d.Claim, raised.ID) {
				up = d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the district's dispute %s never reached the city", raised.ID)
		}
		time.Sleep(200 * time.Millisecond)
	}
	corrected := *target
	corrected.ID, corrected.Op = "00000000-0000-4000-8000-0000000c0001", schemas.OpUpdate
	corrected.Data = maps.Clone(target.Data)
	corrected.Data["name"] = "重庆市渝中区更正后名称有限公司"
	msp := cityCat.Department("market_supervision").Principal
	src, err := producers.New(context.Background(), cityCat, "market_supervision", connect.Config{Brokers: city.Kafka().Brokers, User: msp, Password: city.Credentials[msp], Registry: city.RegistryURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.PublishCorrection(context.Background(), enterprise, up.ID, &corrected); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * time.Minute)
	var down dispute.Dispute
	for down.State != dispute.Corrected {
		distCC.call("civil_affairs", "GET", "/v1/disputes/"+raised.ID, nil, &down)
		if time.Now().After(deadline) {
			t.Fatalf("the district's dispute after the city's correction: %+v", down)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if down.Correction != corrected.ID || len(down.Receipts) < 2 {
		t.Fatalf("the district's dispute: correction %s, receipts %+v", down.Correction, down.Receipts)
	}
	var name string
	if err := pg.QueryRow(context.Background(), `SELECT name FROM legal_person.enterprise_registration WHERE uscc = $1`, target.Key).Scan(&name); err != nil || name != corrected.Data["name"] {
		t.Fatalf("the corrected record in the district: %q %v", name, err)
	}
	// A lookup in the district shows where the record came from, and its
	// audit that the item is the city's.
	code, _, body := lookupAs(t, dist, distCat, "civil_affairs", "/v1/items/"+enterprise+"/records/"+target.Key, url.Values{"purpose": {"社会救助对象经营情况核查"}})
	var rec struct {
		Record struct {
			Provenance struct{ Upstream string } `json:"provenance"`
		} `json:"record"`
	}
	if code != 200 || json.Unmarshal(body, &rec) != nil || !strings.HasPrefix(rec.Record.Provenance.Upstream, "jutong://city/market_supervision/"+enterprise+"?") {
		t.Fatalf("a lookup of a received record: %d %s", code, body)
	}
	for {
		var n uint64
		if err := ch.QueryRow(context.Background(), `SELECT count() FROM audit WHERE kind = 'lookup' AND item = ? AND detail = ?`, enterprise,
			"received from the bus city (its "+enterprise+")").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lookup's audit: %d rows", n)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// The bridge keeps the city's receipts beside its relay.
	for {
		rl := br.Relays()
		if len(rl) == 1 && rl[0].Up == up.ID && rl[0].State == "corrected" && len(rl[0].Receipts) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relays: %+v", rl)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Revocation: the city's source revokes the grant; the flow stops and
	// the bridge says so.
	if code := cc.call("public_security", "POST", "/v1/applications/"+app.ID+"/revoke", control.Verdict{Reason: "协议到期"}, &app); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	publishItem(t, city, cityCat, resident, 10, 26)
	deadline = time.Now().Add(time.Minute)
	for {
		st := br.Statuses()
		if len(st) == 4 && st[3].State == bridge.Revoked && st[3].Item == resident {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after revocation: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := sumSeries(t, reg, "jutong_bridge_flowing", "item", resident); v != 0 {
		t.Fatalf("flowing after revocation: %v", v)
	}
	var n int
	if err := pg.QueryRow(context.Background(), `SELECT count(*) FROM population.resident_registration`).Scan(&n); err != nil || n != len(clear) {
		t.Fatalf("rows after revocation: %d %v", n, err)
	}
	// A granted item the district does not receive is counted, not read.
	if got := sumSeries(t, reg, "jutong_bridge_unmapped_items", "", ""); got != 1 {
		t.Fatalf("unmapped items: %v", got)
	}
	// The item the city never granted is not read, and the bridge says so.
	for _, st := range br.Statuses() {
		if (st.Item == "license.business_license") != (st.State == bridge.NotGranted) {
			t.Fatalf("status %+v", st)
		}
	}

	// Every metric the federation's dashboard and alerts name is one the
	// bridge exports.
	checkFederationMetrics(t, reg)
	// Every panel of the federation dashboard answers with data in a real
	// Prometheus, and the stopped-item alert's condition holds for the
	// revoked and the never-granted items.
	if prom != "" {
		raw, err := os.ReadFile("../../../dashboards/federation/jutong-federation.json")
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(raw, &dash); err != nil {
			t.Fatal(err)
		}
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				if n, err := testenv.PromQueryEventually(prom, tg.Expr, 30*time.Second); err != nil || n == 0 {
					t.Errorf("panel %q: %s returned %d series (%v)", p.Title, tg.Expr, n, err)
				}
			}
		}
		if n, err := testenv.PromQueryEventually(prom, `max by (bus, item) (jutong_bridge_flowing) == 0`, 30*time.Second); err != nil || n != 2 {
			t.Errorf("JutongBridgeItemStopped's condition: %d series (%v), want 2 (revoked, never granted)", n, err)
		}
	}

	// The state is in the ledger, for the receiving bus's operators.
	st, err := bridge.ReadStatus(context.Background(), dist.KafkaOpts(), federation.CityDepartment)
	if err != nil || len(st) != 4 || st[3].State != bridge.Revoked || st[3].Item != resident || st[0].State != bridge.Flowing || st[2].State != bridge.NotGranted {
		t.Fatalf("ledger status: %+v %v", st, err)
	}
}

// receivedEvent is a record of the received item it with provenance prov.
func receivedEvent(it *catalog.Item, id, prov string) *schemas.Event {
	data := map[string]any{"citizen_id": "pseudonym-1", "name": "张三", "gender": it.Field("gender").Symbols[0],
		"birth_date": time.Date(1990, 5, 1, 0, 0, 0, 0, time.UTC), "division_code": "500103", catalog.UpstreamField: prov}
	for _, f := range it.Fields {
		if _, ok := data[f.Name]; !ok {
			data[f.Name] = nil
		}
	}
	return &schemas.Event{ID: id, Op: schemas.OpCreate, Key: "pseudonym-1", Data: data}
}

func isRule(err error, rule string) bool {
	var v *rules.Violation
	return errors.As(err, &v) && v.Rule == rule
}

// quarantined reads the bus's quarantine until n records are there, and
// counts them by rule.
func quarantined(t *testing.T, b *bus.Bus, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		clear(out)
		total := 0
		err := kafkaconn.ReadAll(context.Background(), b.KafkaOpts(), topicname.Quarantine, func(r *kgo.Record) {
			var q quarantine.Record
			if json.Unmarshal(r.Value, &q) == nil {
				out[q.Rule]++
				total++
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if total >= n {
			return out
		}
		time.Sleep(300 * time.Millisecond)
	}
	return out
}

func waitRows(t *testing.T, pg *pgx.Conn, q string, want int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var n int
	for time.Now().Before(deadline) {
		if err := pg.QueryRow(context.Background(), q).Scan(&n); err == nil && n >= want {
			if n != want {
				t.Fatalf("%s: %d, want %d", q, n, want)
			}
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("%s: %d after 90s, want %d", q, n, want)
}

// sumSeries sums a metric's series on reg whose label has the value (all
// series when label is empty).
func sumSeries(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					ok = true
				}
			}
			if !ok {
				continue
			}
			if m.Counter != nil {
				sum += m.GetCounter().GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// checkFederationMetrics: every metric named in dashboards/federation (the
// dashboard, the alert rules) is exported by the bridge on reg.
func checkFederationMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, mf := range mfs {
		exported[mf.GetName()] = true
	}
	used := 0
	for _, f := range []string{"jutong-federation.json", "alerts.yml"} {
		b, err := os.ReadFile("../../../dashboards/federation/" + f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricName.FindAllString(string(b), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			if !exported[base] && !exported[m] {
				t.Errorf("dashboards/federation/%s uses %s, which the bridge does not export", f, m)
			}
			used++
		}
	}
	if used < 6 {
		t.Fatalf("only %d metric uses in dashboards/federation", used)
	}
}

func distinctKeys(evs []*schemas.Event) int {
	k := map[string]bool{}
	for _, e := range evs {
		k[e.Key] = true
	}
	return len(k)
}

// TestFederationComingHome: the other direction. A ministry's bus (the
// Ministry of Public Security's, "mps") grants the city its driving
// licences; the city receives them as an item of its own catalog
// (license.national_driving_license, sourced from the ministry's bus)
// beside its own driving licences, every record once with its provenance.
// The city reading a ministry topic it was not granted is refused there.
func TestFederationComingHome(t *testing.T) {
	const licence, national = "license.driving_license", "license.national_driving_license"
	dir := t.TempDir()
	mpsDir, cityDir := dir+"/mps", dir+"/city"
	if err := federation.WriteBus(mpsDir, nil, "mps", []catalog.Department{{Code: "city_cq", Name: "重庆市共享交换平台", NameEN: "Chongqing's bus", Principal: "dept.city_cq"}}, 0); err != nil {
		t.Fatal(err)
	}
	mpsCat, err := catalog.Load(os.DirFS(mpsDir))
	if err != nil {
		t.Fatal(err)
	}
	if err := federation.WriteCity(cityDir, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := federation.AddReceiving(cityDir, mpsCat, "mps_bus", []federation.Receive{{Item: licence, As: national, Grade: 4}}); err != nil {
		t.Fatal(err)
	}
	cityCat, err := catalog.Load(os.DirFS(cityDir))
	if err != nil {
		t.Fatal(err)
	}
	if it := cityCat.Item(national); it == nil || it.Source != "mps_bus" || it.Upstream.Item != licence || cityCat.Item(licence).Source != "public_security" {
		t.Fatalf("the city's catalog: %+v", it)
	}
	mps := startBus(t, bus.Config{Catalog: mpsCat, PostgresDSN: testenv.Postgres(t), ClickHouseDSN: testenv.ClickHouse(t), ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = mps.Close(context.Background()) })
	city := startBus(t, bus.Config{Catalog: cityCat, PostgresDSN: testenv.Postgres(t), ClickHouseDSN: testenv.ClickHouse(t), ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = city.Close(context.Background()) })

	licences := publishItem(t, mps, mpsCat, licence, 40, 31)
	mc := controlClient{t, mps.APIURL(), mps}
	grant(t, mc, mpsCat, "city_cq", control.Request{Item: licence, Purpose: "驾驶证信息回流（数据回流）"})
	// Hostile: the city on the ministry's bus, for what it was not granted.
	up := mpsCat.Department("city_cq").Principal
	raw, err := kafkaconn.Config{Brokers: mps.Kafka().Brokers, User: up, Password: mps.Credentials[up]}.Client(
		kgo.ConsumeTopics("population.resident_registration"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	fs := raw.PollFetches(pctx)
	cancel()
	raw.Close()
	if err := fs.Err0(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("the city read a ministry topic it was not granted: %v (%d records)", err, fs.NumRecords())
	}

	dp := cityCat.Department("mps_bus").Principal
	br, err := bridge.New(context.Background(), bridge.Config{Catalog: cityCat, Department: "mps_bus", UpstreamDepartment: "city_cq",
		Downstream: connect.Config{Brokers: city.Kafka().Brokers, User: dp, Password: city.Credentials[dp], Registry: city.RegistryURL()},
		Upstream:   connect.Config{Brokers: mps.Kafka().Brokers, User: up, Password: mps.Credentials[up], Registry: mps.RegistryURL()},
		Rediscover: time.Second, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done; br.Close() })

	pg, err := pgx.Connect(context.Background(), city.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	waitRows(t, pg, `SELECT count(*) FROM license.national_driving_license`, distinctKeys(licences))
	var bad int
	if err := pg.QueryRow(context.Background(), `SELECT count(*) FROM license.national_driving_license WHERE upstream NOT LIKE 'jutong://mps/public_security/license.driving_license?%'`).Scan(&bad); err != nil || bad != 0 {
		t.Fatalf("records without the ministry's provenance: %d %v", bad, err)
	}
	// The city's own driving licences are untouched.
	var own int
	if err := pg.QueryRow(context.Background(), `SELECT count(*) FROM license.driving_license`).Scan(&own); err != nil || own != 0 {
		t.Fatalf("the city's own item: %d rows, %v", own, err)
	}
}
