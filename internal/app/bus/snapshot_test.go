package bus_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/lookup"
)

// TestSnapshotThenFollow: while changes flow, a department newly granted
// an item takes its snapshot and follows the item's topic from the
// snapshot's positions; once the changes stop, its state equals the sink's
// (PostgreSQL's, read through the lookups' projection), with no change
// missed and none applied twice.
func TestSnapshotThenFollow(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	cc := controlClient{t, b.APIURL(), b}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const item = "legal_person.enterprise_registration"
	it := cat.Item(item)
	publish := changes(ctx, t, b, it, 31, 7)
	publish(300)
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	const purpose = "纳税信用评价"
	grant(t, cc, cat, "tax", control.Request{Item: item, Purpose: purpose, Grade: 4})

	// Changes keep flowing while the snapshot is taken.
	var wg sync.WaitGroup
	wg.Go(func() { publish(600) })
	p := cat.Department("tax").Principal
	req, _ := http.NewRequestWithContext(ctx, "GET", b.APIURL()+"/v1/items/"+item+"/snapshot?"+url.Values{"purpose": {purpose}}.Encode(), nil)
	req.SetBasicAuth(p, b.Credentials[p])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("snapshot: %d", resp.StatusCode)
	}
	state := map[string]string{} // key -> its data, as JSON
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var start lookup.Start
	ended := false
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			if err := json.Unmarshal(sc.Bytes(), &start); err != nil || start.Follow != item || len(start.Positions) == 0 {
				t.Fatalf("the snapshot's start: %s (%v)", sc.Bytes(), err)
			}
			continue
		}
		var r struct {
			lookup.Record
			End bool `json:"end"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.End {
			ended = true
			break
		}
		if r.Provenance.Offset >= start.Positions[r.Provenance.Partition] {
			t.Errorf("the snapshot holds a change at or past its positions: %+v", r.Provenance)
		}
		b, _ := json.Marshal(r.Data)
		state[r.Key] = string(b)
	}
	if !ended {
		t.Fatal("the snapshot did not end")
	}
	snapshotted := len(state)
	wg.Wait()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}

	// Follow the topic from the positions, as tax (its own credentials).
	offsets := map[int32]kgo.Offset{}
	for part, off := range start.Positions {
		offsets[part] = kgo.NewOffset().At(off)
	}
	k := b.Kafka()
	k.User, k.Password = p, b.Credentials[p]
	cl, err := k.Client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{item: offsets}), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	dec := schemas.NewDecoder(reg)
	followed := 0
	for ctx.Err() == nil && pending(ctx, t, b, item, offsets) > 0 {
		pctx, stop := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		stop()
		fs.EachRecord(func(r *kgo.Record) {
			offsets[r.Partition] = kgo.NewOffset().At(r.Offset + 1)
			ev, err := dec.DecodeItem(ctx, it, r.Value)
			if err != nil {
				t.Fatal(err)
			}
			followed++
			if ev.Op == schemas.OpDelete {
				delete(state, ev.Key)
				return
			}
			m := map[string]any{}
			for k, v := range ev.Data {
				m[k] = schemas.PortableValue(it.Field(k), v)
			}
			b, _ := json.Marshal(m)
			state[ev.Key] = string(b)
		})
	}
	if followed == 0 || snapshotted == 0 {
		t.Fatalf("snapshot %d keys, then %d changes followed: the test did not overlap them", snapshotted, followed)
	}
	// The sink's state, read through the same projection.
	want := snapshotState(ctx, t, b, cat, "tax", item, purpose)
	if len(want) != len(state) {
		t.Errorf("followed state holds %d keys, the sink %d", len(state), len(want))
	}
	for key, data := range want {
		if state[key] != data {
			t.Errorf("key %s: followed %s\n  sink %s", key, state[key], data)
			break
		}
	}
}

// pending says how many records tax's consumer at next has yet to read
// (transaction markers are not records).
func pending(ctx context.Context, t *testing.T, b *bus.Bus, topic string, next map[int32]kgo.Offset) int64 {
	t.Helper()
	cl, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	spans := map[string]map[int32]kafkaconn.Span{topic: {}}
	ends.Each(func(o kadm.ListedOffset) {
		spans[topic][o.Partition] = kafkaconn.Span{From: next[o.Partition].EpochOffset().Offset, End: o.Offset}
	})
	left, err := kafkaconn.Pending(ctx, b.KafkaOpts(), spans, 1<<20, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, ps := range left {
		for _, c := range ps {
			n += c
		}
	}
	return n
}

// TestSubscriberWithSnapshot: the subscriber SDK, asked for a snapshot,
// takes the current state of residents as health's masked grant sees it
// while changes flow, then follows health's feed from the snapshot's
// positions; its state ends equal to the sink's for the granted fields,
// under the same pseudonymous keys. Started again, it follows only.
func TestSubscriberWithSnapshot(t *testing.T) {
	pgDSN := testenv.Postgres(t)
	b := startBus(t, bus.Config{PostgresDSN: pgDSN, ControlEvery: time.Hour, ReadAuditEvery: time.Hour})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cat := sample(t)
	cc := controlClient{t, b.APIURL(), b}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const item, purpose = "population.resident_registration", "疫苗接种覆盖率统计"
	it := cat.Item(item)
	publish := changes(ctx, t, b, it, 41, 9)
	publish(200)
	grant(t, cc, cat, "health", control.Request{Item: item, Purpose: purpose, Fields: []string{"citizen_id", "name", "birth_date", "division_code"}, Grade: 2})
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	state := map[string]string{}
	snapshotted := 0
	apply := func(d consumers.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		if d.Event.Op == schemas.OpDelete {
			delete(state, d.Event.Key)
			return
		}
		m := map[string]any{}
		for k, v := range d.Event.Data {
			m[k] = schemas.PortableValue(it.Field(k), v)
		}
		js, _ := json.Marshal(m)
		state[d.Event.Key] = string(js)
	}
	var wg sync.WaitGroup
	wg.Go(func() { publish(300) })
	sub, err := consumers.New(ctx, cat, "health", []string{item}, b.Conn("health"), consumers.Group("snap"), consumers.WithSnapshot(consumers.SnapshotConfig{API: b.APIURL(), Purpose: purpose, Handle: func(_ context.Context, d consumers.Delivery) error {
		if d.Event.Op != schemas.OpSnapshot || !strings.HasPrefix(d.Topic, "_jutong.feed.health.") {
			t.Errorf("a snapshot delivery: op %s topic %s", d.Event.Op, d.Topic)
		}
		snapshotted++
		apply(d)
		return nil
	}}))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	followed := 0
	done := make(chan error, 1)
	go func() {
		done <- sub.Run(rctx, func(_ context.Context, d consumers.Delivery) error {
			followed++
			apply(d)
			return nil
		})
	}()
	wg.Wait()
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var want map[string]string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		want = snapshotState(ctx, t, b, cat, "health", item, purpose)
		mu.Lock()
		same := fmt.Sprint(state) == fmt.Sprint(want)
		mu.Unlock()
		if same || time.Now().After(deadline) {
			break
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sub.Close()
	mu.Lock()
	defer mu.Unlock()
	if snapshotted == 0 || followed == 0 {
		t.Fatalf("%d records snapshotted, %d changes followed: the test did not overlap them", snapshotted, followed)
	}
	if len(state) != len(want) {
		t.Errorf("the subscriber holds %d keys, the sink %d", len(state), len(want))
	}
	for k, v := range want {
		if state[k] != v {
			t.Errorf("key %s: subscriber %s\n  sink %s", k, state[k], v)
			break
		}
	}
	// Started again on the same group: it follows, no snapshot.
	again, err := consumers.New(ctx, cat, "health", []string{item}, b.Conn("health"), consumers.Group("snap"), consumers.WithSnapshot(consumers.SnapshotConfig{API: b.APIURL(), Purpose: purpose, Handle: func(context.Context, consumers.Delivery) error {
		t.Error("a group that follows took a snapshot again")
		return nil
	}}))
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
}

// snapshotState is the item's state as dept's grant sees it, from a
// snapshot: each key's data as JSON.
func snapshotState(ctx context.Context, t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept, item, purpose string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, r := range snapshotLines(ctx, t, b, cat, dept, item, purpose) {
		js, _ := json.Marshal(r.Data)
		out[k] = string(js)
	}
	return out
}

// changes returns a function that publishes n more synthetic changes of
// it as its source (one delete in deleteEvery), waiting for each.
func changes(ctx context.Context, t *testing.T, b *bus.Bus, it *catalog.Item, seed uint64, deleteEvery int) func(n int) {
	t.Helper()
	pub, err := producers.New(ctx, sample(t), it.Source, b.Conn(it.Source))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	gen := synth.New(it, seed, time.Now())
	gen.DeleteEvery = deleteEvery
	var mu sync.Mutex
	return func(n int) {
		mu.Lock()
		defer mu.Unlock()
		for range n {
			if _, err := pub.Publish(ctx, it.Code, gen.Next()); err != nil {
				t.Error(err)
				return
			}
		}
	}
}
