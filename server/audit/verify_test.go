package audit_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/server/audit"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// trail writes an audit trail of two writers' chains, sealed, into a
// fresh cluster, and returns the cluster's options and the public key.
func trail(t *testing.T, ctx context.Context) ([]kgo.Opt, ed25519.PublicKey) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, audit.Topic), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	kopts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	pub, key, _ := ed25519.GenerateKey(nil)
	a, err := audit.NewWriter(kopts, key, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := audit.NewWriter(kopts, key, "b")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		w := a
		if i%3 == 2 {
			w = b
		}
		if err := w.Write(ctx, audit.Event{Kind: audit.Lookup, Department: "tax", Item: "legal_person.enterprise_registration",
			Grant: "app-1", Purpose: "纳税信用评价", Keys: []string{fmt.Sprint("key-", i)}, Records: 1}); err != nil {
			t.Fatal(err)
		}
		if i == 4 {
			if err := a.Seal(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return kopts, pub
}

func records(t *testing.T, ctx context.Context, kopts []kgo.Opt, topic string) []*kgo.Record {
	t.Helper()
	var recs []*kgo.Record
	if err := kafkaconn.ReadAll(ctx, kopts, topic, func(r *kgo.Record) { recs = append(recs, r) }); err != nil {
		t.Fatal(err)
	}
	return recs
}

// rewrite copies the trail to a topic of its own through edit, as an
// operator rewriting the topic would, and verifies the copy.
func rewrite(t *testing.T, ctx context.Context, kopts []kgo.Opt, pub ed25519.PublicKey, name string, edit func([]*kgo.Record) []*kgo.Record) audit.Report {
	t.Helper()
	recs := records(t, ctx, kopts, audit.Topic)
	cl, err := kgo.NewClient(append(kopts, kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic(name))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, r := range edit(recs) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: name, Value: r.Value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := audit.VerifyKafka(ctx, kopts, name, pub)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func event(t *testing.T, r *kgo.Record) audit.Event {
	var e audit.Event
	if err := json.Unmarshal(r.Value, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func mustName(t *testing.T, rep audit.Report, offset int64, what string) {
	t.Helper()
	if rep.OK() {
		t.Fatalf("%s: the trail verifies: %s", what, rep)
	}
	for _, p := range rep.Problems {
		if p.Offset == offset {
			t.Logf("%s: %s", what, p)
			return
		}
	}
	t.Errorf("%s: no problem names offset %d: %s", what, offset, rep)
}

// TestVerifyKafka: the trail as written verifies; rewritten with one record
// changed, removed or inserted, or signed by another key, verification
// fails naming the record.
func TestVerifyKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kopts, pub := trail(t, ctx)
	rep, err := audit.VerifyKafka(ctx, kopts, audit.Topic, pub)
	if err != nil {
		t.Fatal(err)
	}
	// 2 starts, 10 events, a's mid-way head and 2 final heads.
	if !rep.OK() || rep.Records != 15 || rep.Chains != 2 || rep.Heads != 3 || len(rep.Unsealed) != 0 {
		t.Fatalf("the trail as written: %s (%+v)", rep, rep)
	}
	recs := records(t, ctx, kopts, audit.Topic)
	// the 4th event (a lookup of chain a, not the last of its chain)
	target := int64(-1)
	for _, r := range recs {
		if e := event(t, r); e.Kind == audit.Lookup && strings.HasPrefix(e.Chain, "a/") && e.Keys[0] == "key-3" {
			target = r.Offset
		}
	}
	if target < 0 {
		t.Fatal("no key-3 lookup")
	}
	rep = rewrite(t, ctx, kopts, pub, "changed", func(rs []*kgo.Record) []*kgo.Record {
		rs[target].Value = []byte(strings.Replace(string(rs[target].Value), `"department":"tax"`, `"department":"health"`, 1))
		return rs
	})
	mustName(t, rep, target, "a record changed")

	rep = rewrite(t, ctx, kopts, pub, "removed", func(rs []*kgo.Record) []*kgo.Record {
		return append(rs[:target:target], rs[target+1:]...)
	})
	mustName(t, rep, target, "a record removed") // the next record now sits at its offset

	rep = rewrite(t, ctx, kopts, pub, "inserted", func(rs []*kgo.Record) []*kgo.Record {
		forged := *rs[target]
		forged.Value = []byte(strings.Replace(string(rs[target].Value), `"key-3"`, `"key-forged"`, 1))
		return append(rs[:target+1:target+1], append([]*kgo.Record{&forged}, rs[target+1:]...)...)
	})
	mustName(t, rep, target+1, "a record inserted (a copy of its predecessor's place)")

	rep = rewrite(t, ctx, kopts, pub, "unchained", func(rs []*kgo.Record) []*kgo.Record {
		b, _ := json.Marshal(audit.Event{Time: time.Now(), Kind: audit.Granted, Department: "tax", Item: "x"})
		return append(rs[:3:3], append([]*kgo.Record{{Value: b}}, rs[3:]...)...)
	})
	mustName(t, rep, 3, "a record on no chain")

	rep = rewrite(t, ctx, kopts, pub, "appended", func(rs []*kgo.Record) []*kgo.Record {
		last := rs[len(rs)-1] // a final head
		e := event(t, last)
		b, _ := json.Marshal(audit.Event{Time: time.Now(), Kind: audit.Granted, Department: "tax", Chain: e.Chain, Seq: e.Seq + 1, Prev: audit.Hash(last.Value)})
		return append(rs, &kgo.Record{Value: b})
	})
	mustName(t, rep, int64(len(recs)), "a record appended after a chain's final head")

	other, _, _ := ed25519.GenerateKey(nil)
	rep, err = audit.VerifyKafka(ctx, kopts, audit.Topic, other)
	if err != nil {
		t.Fatal(err)
	}
	mustName(t, rep, 0, "verified with another key")
}

// TestVerifyClickHouse: the trail copied into ClickHouse verifies; a
// column changed alone, a record changed with its column, a row deleted or
// inserted fail verification naming the row's offset.
func TestVerifyClickHouse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kopts, pub := trail(t, ctx)
	dsn := testenv.ClickHouse(t)
	ch := testenv.ClickHouseConn(t, dsn)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- chsink.Copy(cctx, pipeline.Config{Kafka: kopts, Catalog: &catalog.Catalog{}}, dsn,
			chsink.Table{Topic: audit.Topic, DDL: audit.TableDDL, Insert: audit.InsertSQL, Row: audit.Row, Added: audit.AddedColumns()},
			slog.New(slog.DiscardHandler))
	}()
	var n uint64
	for ctx.Err() == nil {
		_ = ch.QueryRow(ctx, "SELECT count() FROM audit").Scan(&n)
		if n == 15 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	<-done
	verify := func() audit.Report {
		t.Helper()
		rep, err := audit.VerifyClickHouse(ctx, ch, pub)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := verify(); !rep.OK() || rep.Records != 15 {
		t.Fatalf("the trail as copied: %s", rep)
	}
	// mutate runs an ALTER and waits for it (mutations are asynchronous).
	mutate := func(sql string, check string, want uint64) {
		t.Helper()
		if err := ch.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
		for ctx.Err() == nil {
			var got uint64
			if err := ch.QueryRow(ctx, check).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got == want {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s did not take", sql)
	}
	var target int64
	if err := ch.QueryRow(ctx, "SELECT kafka_offset FROM audit WHERE has(keys, 'key-3')").Scan(&target); err != nil {
		t.Fatal(err)
	}
	mutate("ALTER TABLE audit UPDATE department = 'health' WHERE kafka_offset = "+fmt.Sprint(target),
		"SELECT count() FROM audit WHERE department = 'health'", 1)
	mustName(t, verify(), target, "a column changed alone")

	mutate("ALTER TABLE audit UPDATE raw = replaceOne(raw, '\"department\":\"tax\"', '\"department\":\"health\"') WHERE kafka_offset = "+fmt.Sprint(target),
		"SELECT count() FROM audit WHERE position(raw, '\"department\":\"health\"') > 0", 1)
	mustName(t, verify(), target, "a record changed with its column")

	mutate("ALTER TABLE audit DELETE WHERE kafka_offset = "+fmt.Sprint(target), "SELECT count() FROM audit", 14)
	rep := verify()
	if rep.OK() {
		t.Fatalf("a row deleted: the trail verifies: %s", rep)
	}
	t.Logf("a row deleted: %s", rep.Problems[0])

	batch, err := ch.PrepareBatch(ctx, "INSERT INTO audit (time, time_ms, kind, department, item, raw, kafka_partition, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append(time.Now(), int64(0), "granted", "tax", "x", `{"kind":"granted","department":"tax"}`, int32(0), int64(1000)); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	mustName(t, verify(), 1000, "a row inserted")
}

// TestGroupCommit: writes made at once are produced together (fewer round
// trips than writes), each caller returns once its event is in Kafka, and
// the chain they make verifies, every event on it once.
func TestGroupCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, audit.Topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var produces atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		produces.Add(1)
		c.KeepControl()
		return nil, nil, false
	})
	kopts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	pub, key, _ := ed25519.GenerateKey(nil)
	w, err := audit.NewWriter(kopts, key, "lookups")
	if err != nil {
		t.Fatal(err)
	}
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- w.Write(ctx, audit.Event{Kind: audit.Lookup, Department: "tax", Item: "legal_person.enterprise_registration",
				Grant: "app-1", Purpose: "纳税信用评价", Keys: []string{fmt.Sprint("key-", i)}, Records: 1})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyKafka(ctx, kopts, audit.Topic, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Records != n+2 || rep.Chains != 1 { // a start, the events, a final head
		t.Fatalf("the trail: %s (%+v)", rep, rep)
	}
	keys := map[string]bool{}
	for _, r := range records(t, ctx, kopts, audit.Topic) {
		if e := event(t, r); e.Kind == audit.Lookup {
			keys[e.Keys[0]] = true
		}
	}
	if len(keys) != n {
		t.Fatalf("%d distinct lookups on the chain, want %d", len(keys), n)
	}
	if p := produces.Load(); p >= n {
		t.Errorf("%d produce requests for %d writes: not grouped", p, n)
	}
	t.Logf("%d writes in %d produce requests", n, produces.Load())
}
