package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// rawAs is a plain franz-go client with a department's own credentials:
// what a hostile department holds, whatever SDK it was given.
func rawAs(t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept string, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	p := cat.Department(dept).Principal
	k := kafkaconn.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p]}
	cl, err := k.Client(append([]kgo.Opt{kgo.RecordRetries(1), kgo.RequestRetries(1)}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestHostileDepartment plays market supervision holding its own Kafka
// credentials and a raw client: every write the bus's rules forbid is
// refused by Kafka itself, and every record it sends to its inbox that
// breaks a rule is quarantined with that rule and never reaches a sink,
// while what the record claims about who sent it and when is overwritten.
func TestHostileDepartment(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	const dept = "market_supervision"
	it := cat.Item(item)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := rawAs(t, b, cat, dept)

	t.Run("forbidden writes", func(t *testing.T) { forbiddenWrites(ctx, t, b, cat, dept, cl) })

	t.Run("forbidden reads", func(t *testing.T) { forbiddenReads(ctx, t, b, cat, dept) })

	// Records to its own inbox, framed with the item's real schema.
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schemas.For(it)
	if err != nil {
		t.Fatal(err)
	}
	// The bus registers the item's schema on catalog apply; as the bus here.
	id, err := reg.RegisterSchema(ctx, it.Subject(), sr.Schema{Schema: s.JSON, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	gen := synth.New(it, 11, time.Now())
	gen.DeleteEvery, gen.UpdateEvery = 0, 0
	valid := func() *schemas.Event {
		e := gen.Next()
		e.Source = schemas.Source{Department: dept, System: "hostile", Adapter: "raw"}
		e.PublishTime = time.Now().UTC().Truncate(time.Millisecond)
		return e
	}
	send := func(e *schemas.Event, itemCode string, extra ...kgo.RecordHeader) {
		t.Helper()
		payload, err := s.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Topic: topicname.Inbox(dept), Key: []byte(e.Key), Value: schemas.Frame(nil, id, payload),
			Headers: append([]kgo.RecordHeader{{Key: inbox.HeaderItem, Value: []byte(itemCode)}}, extra...)}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	wantRule := map[string]string{} // event id -> rule
	breakers := []struct {
		rule  string
		field string
		fn    func(e *schemas.Event)
	}{
		{"citizen_id.checksum", "legal_representative_id", func(e *schemas.Event) { e.Data["legal_representative_id"] = "110105194912310021" }},
		{"blank", "name", func(e *schemas.Event) { e.Data["name"] = "  " }},
		{"citizen_id.birth_date", "legal_representative_id", func(e *schemas.Event) { e.Data["legal_representative_id"] = "500103209901010014" }},
		{"division.province", "division_code", func(e *schemas.Event) { e.Data["division_code"] = "999999" }},
		{"key.match", "uscc", func(e *schemas.Event) { e.Key = "91500000MA5U7CQ96X" }},
		{"text.nul", "address", func(e *schemas.Event) { e.Data["address"] = "重庆\x00路" }},
		{"text.utf8", "address", func(e *schemas.Event) { e.Data["address"] = "重庆\xff路" }},
	}
	for _, br := range breakers {
		e := valid()
		br.fn(e)
		wantRule[e.ID] = br.rule
		send(e, item)
	}
	// Forged claims: another department as the source, a publish time in
	// 2030, a dispute flag of the bus's own (only the door says a record is
	// disputed).
	forged := valid()
	forged.Source.Department = "tax"
	forged.PublishTime = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	send(forged, item, kgo.RecordHeader{Key: schemas.HeaderDisputes, Value: []byte("dsp-forged")})
	// A forged flag record: the bus's kind of record, sent as a department.
	flagEvent := valid()
	wantRule[flagEvent.ID] = "kind.unknown"
	send(flagEvent, item, kgo.RecordHeader{Key: schemas.HeaderKind, Value: []byte(schemas.KindFlag)})
	// Another department's item, in its own inbox.
	other := cat.Item("population.resident_registration")
	ge := synth.New(other, 3, time.Now()).Next()
	so, _ := schemas.For(other)
	oid, err := reg.RegisterSchema(ctx, other.Subject(), sr.Schema{Schema: so.JSON, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	op, _ := so.Encode(ge)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topicname.Inbox(dept), Key: []byte(ge.Key), Value: schemas.Frame(nil, oid, op),
		Headers: []kgo.RecordHeader{{Key: inbox.HeaderItem, Value: []byte(other.Code)}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A refusal notice of its own (jutong.kind: refused, as the SDK sends
	// what it refused) for another department's item: the door's verdict,
	// source.owner, wins over the rule the sender put in it.
	notice, _ := json.Marshal(quarantine.Record{Item: other.Code, Key: ge.Key, Department: dept, Rule: "blank", Field: "name",
		Reason: "name is blank", EventID: "refused-for-another-item", Op: "CREATE"})
	wantRule["refused-for-another-item"] = "source.owner"
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topicname.Inbox(dept), Key: []byte(ge.Key), Value: notice,
		Headers: []kgo.RecordHeader{{Key: inbox.HeaderItem, Value: []byte(other.Code)}, {Key: inbox.HeaderKind, Value: []byte(inbox.KindRefused)}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Garbage, an unknown schema id, another item's schema under this item,
	// and a record over the item's size limit.
	huge := schemas.Frame(nil, id, make([]byte, 950<<10))
	for _, v := range [][]byte{[]byte("garbage, not avro"), schemas.Frame(nil, 987654, []byte{1, 2, 3}), schemas.Frame(nil, oid, op), huge} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topicname.Inbox(dept), Key: []byte("x"), Value: v,
			Headers: []kgo.RecordHeader{{Key: inbox.HeaderItem, Value: []byte(item)}}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ok := valid()
	send(ok, item)

	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// The item topic holds the forged record (with the truth stamped) and the valid one, nothing else.
	landed := itemRecords(ctx, t, b, reg) // partitions read one after another: in no order
	if len(landed) == 2 && landed[1].ID == forged.ID {
		landed[0], landed[1] = landed[1], landed[0]
	}
	if len(landed) != 2 || landed[0].ID != forged.ID || landed[1].ID != ok.ID {
		t.Fatalf("the item topic holds %d records, want the forged one and the valid one", len(landed))
	}
	if got := landed[0]; got.Source.Department != dept || got.PublishTime.Year() == 2030 || time.Since(got.PublishTime) > time.Minute {
		t.Errorf("forged claims survived the door: source %q, publish time %s", got.Source.Department, got.PublishTime)
	}
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), item, func(r *kgo.Record) {
		for _, h := range r.Headers {
			if h.Key == schemas.HeaderDisputes || h.Key == schemas.HeaderKind {
				t.Errorf("a department's header reached the item topic: %s=%s", h.Key, h.Value)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	byRule := quarantinedByRule(ctx, t, b, dept, wantRule)
	if q := byEvent(ctx, t, b, "refused-for-another-item"); q == nil || q.Rule != "source.owner" || q.Field != "" || q.Item != other.Code ||
		!strings.Contains(q.Reason, "not the source") || !strings.Contains(q.Reason, "blank") {
		t.Errorf("a refusal notice for another department's item is kept as %+v, want the door's source.owner (the sender's blank in the reason)", q)
	}
	for _, br := range breakers {
		q, found := byRule[br.rule]
		if !found || q.Field != br.field || q.Reason == "" {
			t.Errorf("rule %s: quarantined %v with field %q, want field %s", br.rule, found, q.Field, br.field)
		}
	}
	for _, rule := range []string{"source.owner", "schema.decode", "record.size", "kind.unknown"} {
		if q, found := byRule[rule]; !found || (rule != "source.owner" && rule != "kind.unknown" && q.PayloadSHA256 == "") {
			t.Errorf("no %s refusal with its payload: %+v", rule, q.Rule)
		}
	}
	if q := byRule["record.size"]; q.PayloadSize != len(huge) || len(q.Payload) == 0 || len(q.Payload) > 100<<10 {
		t.Errorf("the oversized record is not kept as its start, its size and a SHA-256: size %d, payload %d bytes", q.PayloadSize, len(q.Payload))
	}
	// The sinks hold the two, nothing else.
	var pgRows int
	if err := testenv.PostgresPool(t, pgDSN).QueryRow(ctx, "SELECT count(*) FROM legal_person.enterprise_registration").Scan(&pgRows); err != nil || pgRows != 2 {
		t.Errorf("PostgreSQL holds %d rows (%v), want 2", pgRows, err)
	}
	var chRows uint64
	if err := testenv.ClickHouseConn(t, chDSN).QueryRow(ctx, "SELECT count() FROM events").Scan(&chRows); err != nil || chRows != 2 {
		t.Errorf("ClickHouse holds %d events (%v), want 2", chRows, err)
	}

	t.Run("own rejects", func(t *testing.T) { ownRejects(ctx, t, b, cat, dept, len(breakers), wantRule) })
}

// TestRecordTheDatabaseRefuses: a record PostgreSQL refuses for its content
// (a NUL byte in text, which the door would have refused; here injected past
// it by the bus's own superuser) is dead-lettered by the PostgreSQL sink,
// alone: the records around it, of its item and another, land, and the sink
// moves on.
func TestRecordTheDatabaseRefuses(t *testing.T) {
	pgDSN, chDSN := testenv.Postgres(t), testenv.ClickHouse(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ClickHouseDSN: chDSN})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	it := cat.Item(item)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := schemas.For(it)
	id, err := reg.RegisterSchema(ctx, it.Subject(), sr.Schema{Schema: s.JSON, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	gen := synth.New(it, 21, time.Now())
	gen.DeleteEvery, gen.UpdateEvery = 0, 0
	admin, err := b.Kafka().Client(kgo.DefaultProduceTopic(item))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var poison string
	for i := 0; i < 50; i++ {
		e := gen.Next()
		e.Source, e.PublishTime = schemas.Source{Department: it.Source, System: "admin", Adapter: "raw"}, time.Now()
		if i == 25 {
			e.Data["name"] = "重庆\x00火锅" // PostgreSQL: invalid byte sequence for encoding UTF8: 0x00
			poison = e.Key
		}
		payload, err := s.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.ProduceSync(ctx, &kgo.Record{Key: []byte(e.Key), Value: schemas.Frame(nil, id, payload)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	publishItem(t, b, cat, "health.vaccination", 30, 4) // another item, through the door
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	pg := testenv.PostgresPool(t, pgDSN)
	var rows, bad int
	if err := pg.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE uscc = $1) FROM legal_person.enterprise_registration", poison).Scan(&rows, &bad); err != nil {
		t.Fatal(err)
	}
	if rows != 49 || bad != 0 {
		t.Fatalf("PostgreSQL holds %d rows (the refused one: %d), want the 49 others", rows, bad)
	}
	var vacc int
	if err := pg.QueryRow(ctx, "SELECT count(*) FROM health.vaccination").Scan(&vacc); err != nil || vacc == 0 {
		t.Fatalf("the other item did not land: %d rows, %v", vacc, err)
	}
	// The dead-letter topic holds it, with the sink and PostgreSQL's words.
	found := false
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topicname.DeadLetter, func(r *kgo.Record) {
		hdr := map[string]string{}
		for _, h := range r.Headers {
			hdr[h.Key] = string(h.Value)
		}
		if string(r.Key) == poison && hdr["jutong.sink"] == "postgres" && strings.Contains(hdr["jutong.error"], "0x00") {
			found = true
		}
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatal("the refused record is not in the dead-letter topic with the sink and the error")
	}
}

// forbiddenWrites: Kafka refuses dept every write outside its inbox.
func forbiddenWrites(ctx context.Context, t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept string, cl *kgo.Client) {
	for _, topic := range []string{item, topicname.Quarantine, topicname.DeadLetter, topicname.Checkpoints("tax"),
		topicname.Inbox("tax"), topicname.Rejects(dept), topicname.Control, topicname.Audit, topicname.Schemas,
		topicname.DoorIDs, topicname.FeedLedger} {
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("forged")}).FirstErr()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Errorf("%s wrote to %s: %v", dept, topic, err)
		}
	}
	if haveKcat(t) {
		if out, err := kcatProduce(t, b, cat, dept, item); err == nil {
			t.Errorf("kcat wrote to the item topic %s: %s", item, out)
		}
		if out, err := kcatProduce(t, b, cat, dept, topicname.Quarantine); err == nil {
			t.Errorf("kcat wrote to the quarantine: %s", out)
		}
	}
}

// forbiddenReads: Kafka refuses dept the reads of other departments' topics.
func forbiddenReads(ctx context.Context, t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept string) {
	for _, topic := range []string{topicname.Checkpoints("tax"), topicname.Rejects("tax"), topicname.Inbox("tax"), topicname.Quarantine} {
		c := rawAs(t, b, cat, dept, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		fs := c.PollFetches(rctx)
		rcancel()
		denied := false
		fs.EachError(func(_ string, _ int32, err error) { denied = denied || errors.Is(err, kerr.TopicAuthorizationFailed) })
		if !denied {
			t.Errorf("%s read %s: %d records, %v", dept, topic, fs.NumRecords(), fs.Err0())
		}
	}
}

// ownRejects: dept reads its own refused records, with rule and payload;
// another department cannot.
func ownRejects(ctx context.Context, t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept string, refused int, wantRule map[string]string) {
	c := rawAs(t, b, cat, dept, kgo.ConsumeTopics(topicname.Rejects(dept)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	seen := 0
	for seen < refused && ctx.Err() == nil {
		fs := c.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("%s cannot read its own rejects: %v", dept, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var q quarantine.Record
			if json.Unmarshal(r.Value, &q) == nil && wantRule[q.EventID] != "" && q.Rule == wantRule[q.EventID] && q.Payload != "" {
				seen++
			}
		})
	}
	if seen < refused {
		t.Fatalf("%s's rejects show %d of its %d refused records with rule and payload", dept, seen, refused)
	}
	tax := rawAs(t, b, cat, "tax", kgo.ConsumeTopics(topicname.Rejects(dept)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	fs := tax.PollFetches(rctx)
	denied := false
	fs.EachError(func(_ string, _ int32, err error) { denied = denied || errors.Is(err, kerr.TopicAuthorizationFailed) })
	if !denied || fs.NumRecords() > 0 {
		t.Fatalf("tax read market supervision's rejects (%d records)", fs.NumRecords())
	}
}

// quarantinedByRule reads the quarantine: every refusal must be in the
// sender's name, with the rule its event was broken by.
func quarantinedByRule(ctx context.Context, t *testing.T, b *bus.Bus, dept string, wantRule map[string]string) map[string]quarantine.Record {
	byRule := map[string]quarantine.Record{}
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topicname.Quarantine, func(r *kgo.Record) {
		var q quarantine.Record
		if err := json.Unmarshal(r.Value, &q); err != nil {
			t.Errorf("quarantine: %v", err)
			return
		}
		if q.Department != dept {
			t.Errorf("a refusal in the name of %q", q.Department)
		}
		if want, ok := wantRule[q.EventID]; ok && q.Rule != want {
			t.Errorf("event %s: rule %s, want %s", q.EventID, q.Rule, want)
		}
		byRule[q.Rule] = q
	}); err != nil {
		t.Fatal(err)
	}
	return byRule
}

// byEvent is the quarantine's record of an event id (nil: none).
func byEvent(ctx context.Context, t *testing.T, b *bus.Bus, id string) *quarantine.Record {
	var out *quarantine.Record
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topicname.Quarantine, func(r *kgo.Record) {
		var q quarantine.Record
		if json.Unmarshal(r.Value, &q) == nil && q.EventID == id {
			out = &q
		}
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// itemRecords decodes every record of the item's topic.
func itemRecords(ctx context.Context, t *testing.T, b *bus.Bus, reg *sr.Client) []*schemas.Event {
	dec := schemas.NewDecoder(reg)
	var landed []*schemas.Event
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), item, func(r *kgo.Record) {
		e, err := dec.Decode(ctx, r.Value)
		if err != nil {
			t.Errorf("item topic: %v", err)
			return
		}
		landed = append(landed, e)
	}); err != nil {
		t.Fatal(err)
	}
	return landed
}

// TestItemWithoutTopicStopsNothing: records of an item whose topic was
// never created (catalog apply not run yet) are refused with their reason,
// and the door keeps forwarding everyone else's.
func TestItemWithoutTopicStopsNothing(t *testing.T) {
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, AdminUser: "jutong", AdminPassword: "pw",
		RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Log: testenv.Logger(t)}) // no item topic
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	admin, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const other = "health.vaccination"
	if _, err := kadm.NewClient(admin).CreateTopic(ctx, 1, 1, nil, other); err != nil {
		t.Fatal(err)
	}
	// Both schemas registered, as by an apply that failed half-way.
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{item, other} {
		s, err := schemas.For(cat.Item(code))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.CreateSchema(ctx, cat.Item(code).Subject(), sr.Schema{Schema: s.JSON}); err != nil {
			t.Fatal(err)
		}
	}
	publishItem(t, b, cat, item, 5, 1)  // market supervision: no topic
	publishItem(t, b, cat, other, 5, 2) // health: its topic exists
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), other, func(*kgo.Record) { n++ }); err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Fatalf("%s holds %d records, want 5", other, n)
	}
	refused := 0
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topicname.Quarantine, func(r *kgo.Record) {
		var q quarantine.Record
		if json.Unmarshal(r.Value, &q) == nil && q.Rule == "item.no_topic" && q.Item == item {
			refused++
		}
	}); err != nil {
		t.Fatal(err)
	}
	if refused != 5 {
		t.Fatalf("%d records refused with item.no_topic, want 5", refused)
	}
}

// TestInboxWithoutItemHeader: a department's standard Confluent serializer
// frames the value with its item's registered schema id and sets no Jutong
// header; the door takes the item from the id. A value framed with the id
// of another department's item is refused as source.owner, one with an id no
// item's subject has as item.unknown.
func TestInboxWithoutItemHeader(t *testing.T) {
	b := startBus(t, bus.Config{})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const dept = "market_supervision"
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(it *catalog.Item, e *schemas.Event) []byte {
		s, err := schemas.For(it)
		if err != nil {
			t.Fatal(err)
		}
		id, err := reg.RegisterSchema(ctx, it.Subject(), sr.Schema{Schema: s.JSON, Type: sr.TypeAvro}, -1, -1)
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		return schemas.Frame(nil, id, p)
	}
	own, other := cat.Item(item), cat.Item("population.resident_registration")
	ok := synth.New(own, 5, time.Now()).Next()
	foreign := synth.New(other, 5, time.Now()).Next()
	cl := rawAs(t, b, cat, dept)
	for _, r := range []*kgo.Record{
		{Key: []byte(ok.Key), Value: frame(own, ok)},
		{Key: []byte(foreign.Key), Value: frame(other, foreign)},
		{Key: []byte("x"), Value: schemas.Frame(nil, 424242, []byte{2})},
	} {
		r.Topic = topicname.Inbox(dept)
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	landed := itemRecords(ctx, t, b, reg)
	if len(landed) != 1 || landed[0].ID != ok.ID || landed[0].Source.Department != dept {
		t.Errorf("the item topic holds %+v, want the record sent without a header", landed)
	}
	byRule := quarantinedByRule(ctx, t, b, dept, nil)
	if q, found := byRule["source.owner"]; !found || q.Item != other.Code || q.PayloadSHA256 == "" {
		t.Errorf("another department's item, framed with its id: %+v, want source.owner with the payload", q)
	}
	if q, found := byRule["item.unknown"]; !found || !strings.Contains(q.Reason, "jutong.item") {
		t.Errorf("an unknown schema id without a header: %+v", q)
	}
}
