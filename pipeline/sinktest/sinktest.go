// Package sinktest is the conformance suite every pipeline.Sink passes: the
// same tests run against the PostgreSQL base-database sink, the theme-database
// sink, the ClickHouse sink and a grant's feed (on the embedded Kafka), on
// real databases (Watermill's pub/sub test
// suite is the model).
//
// The suite writes batches straight into the sink, as the pipeline runner
// does, and compares what the sink holds with a reference model: for each
// item, the live keys and the offset of the change each key's row came from,
// and, for sinks that keep the history, every offset exactly once. It covers
// per-key order, update after delete, a batch delivered twice and batches
// that overlap, a restart mid-stream (the sink resumes from its own ledger),
// an abandoned batch, schema evolution mid-stream, dead-lettered records and
// several items and partitions in one batch. The crash test (a pipeline
// process killed with SIGKILL while events flow) lives with the bus, where a
// real process can be killed: see internal/bus.
package sinktest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/schemas"
)

// Harness is what a sink gives the suite.
type Harness struct {
	// Items are the catalog items the suite writes (two or more, unless the
	// sink takes a single item, as a grant's feed does). Items[0] is also
	// evolved (a new optional field) mid-stream.
	Items []*catalog.Item
	// All is every item the sink is prepared with, as the runner prepares
	// it with all the items it routes to the sink (default: Items).
	All []*catalog.Item
	// Database is called once per test and returns an opener of sinks on a
	// new, empty database: each call of open is a fresh sink instance on that
	// database (the suite closes the previous one first: a restart).
	Database func(t *testing.T) (open func() pipeline.Sink)
	// State returns, for each live key of the item, the Kafka offset of the
	// change its row came from.
	State func(ctx context.Context, s pipeline.Sink, it *catalog.Item) (map[string]int64, error)
	// Field returns a field of a key's row as text ("" for null).
	Field func(ctx context.Context, s pipeline.Sink, it *catalog.Item, key, field string) (string, error)
	// History, for sinks that keep every change, returns the positions of
	// the item's changes as stored, duplicates included; nil otherwise.
	History func(ctx context.Context, s pipeline.Sink, it *catalog.Item) ([]Position, error)
}

// Position is where a change was in Kafka.
type Position struct {
	Partition int32
	Offset    int64
}

func comparePositions(a, b Position) int {
	if a.Partition != b.Partition {
		return int(a.Partition - b.Partition)
	}
	return int(a.Offset - b.Offset)
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	if len(h.Items) == 0 {
		t.Fatal("sinktest: the harness needs an item")
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *run)
	}{
		{"PerKeyOrder", testPerKeyOrder},
		{"UpdateAfterDelete", testUpdateAfterDelete},
		{"Redelivery", testRedelivery},
		{"RestartMidStream", testRestart},
		{"AbandonedBatch", testAbandoned},
		{"SchemaEvolution", testEvolution},
		{"DeadLettered", testDeadLettered},
		{"ItemsAndPartitions", testItemsAndPartitions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r := &run{t: t, h: h, ctx: ctx, open: h.Database(t), model: newModel(), gens: map[*catalog.Item]*synth.Generator{}}
			r.restart()
			defer func() { r.sink.Close() }()
			tc.fn(t, r)
		})
	}
}

// run is one test's state: the sink, its reference model and the stream.
type run struct {
	t      *testing.T
	h      Harness
	ctx    context.Context
	open   func() pipeline.Sink
	sink   pipeline.Sink
	model  *model
	gens   map[*catalog.Item]*synth.Generator
	next   map[tp]int64 // the next offset to hand out per topic-partition
	writes int          // batches written: a ColumnSink gets every other one as columns
}

type tp struct {
	topic string
	part  int32
}

// restart closes the sink (if any) and opens a new one on the same
// database, prepared for the harness's items, with the given ones in place
// of those of the same code.
func (r *run) restart(replace ...*catalog.Item) {
	r.t.Helper()
	items := slices.Clone(r.h.All)
	if len(items) == 0 {
		items = slices.Clone(r.h.Items)
	}
	for _, rep := range replace {
		for i, it := range items {
			if it.Code == rep.Code {
				items[i] = rep
			}
		}
	}
	if r.sink != nil {
		if err := r.sink.Close(); err != nil {
			r.t.Fatalf("close: %v", err)
		}
	}
	r.sink = r.open()
	if err := r.sink.Prepare(r.ctx, items); err != nil {
		r.t.Fatalf("prepare: %v", err)
	}
	if r.next == nil {
		r.next = map[tp]int64{}
	}
}

// change makes the next record of a key: op, with generated data unless it
// is a delete (data is nil) or a dead letter (no event at all).
func (r *run) change(it *catalog.Item, part int32, key string, op schemas.Op) pipeline.Record {
	g := r.gens[it]
	if g == nil {
		g = synth.New(it, uint64(len(r.gens)+1), time.Now())
		r.gens[it] = g
	}
	k := tp{it.Topic(), part}
	rec := pipeline.Record{Item: it, Partition: part, Offset: r.next[k]}
	r.next[k]++
	if op == "" {
		rec.DeadLetter = "sinktest: not a change event"
		return rec
	}
	ev := g.Next()
	ev.Op, ev.Key = op, key
	if op == schemas.OpDelete {
		ev.Data = nil
	} else {
		if ev.Data == nil { // the generator picked a delete: make data
			ev = synthData(r.t, g)
			ev.Op, ev.Key = op, key
		}
		ev.Data[it.Key] = key
	}
	rec.Event = ev
	return rec
}

// synthData draws events until one carries data.
func synthData(t *testing.T, g *synth.Generator) *schemas.Event {
	for range 100 {
		if ev := g.Next(); ev.Data != nil {
			return ev
		}
	}
	t.Fatal("sinktest: the generator makes no data")
	return nil
}

// write hands a batch to the sink and, when it succeeds, to the model.
func (r *run) write(batch ...pipeline.Record) {
	r.t.Helper()
	in := batch
	if cs, ok := r.sink.(pipeline.ColumnSink); ok && cs.WritesColumns() && r.writes%2 == 0 {
		in = AsColumns(r.t, batch)
	}
	r.writes++
	if err := r.sink.Write(r.ctx, in, time.Now()); err != nil {
		r.t.Fatalf("write: %v", err)
	}
	r.model.apply(batch)
}

// check compares the sink with the model for every item written.
func (r *run) check() {
	r.t.Helper()
	for _, it := range r.model.items() {
		got, err := r.h.State(r.ctx, r.sink, it)
		if err != nil {
			r.t.Fatalf("state of %s: %v", it.Code, err)
		}
		want := r.model.state[it.Code]
		for k, off := range want {
			if g, ok := got[k]; !ok {
				r.t.Errorf("%s: key %s missing (its last change is at offset %d)", it.Code, k, off)
			} else if g != off {
				r.t.Errorf("%s: key %s holds the change at offset %d, want %d", it.Code, k, g, off)
			}
		}
		for k, off := range got {
			if _, ok := want[k]; !ok {
				r.t.Errorf("%s: key %s present (from offset %d) but deleted or never written", it.Code, k, off)
			}
		}
		if r.h.History == nil {
			continue
		}
		hist, err := r.h.History(r.ctx, r.sink, it)
		if err != nil {
			r.t.Fatalf("history of %s: %v", it.Code, err)
		}
		slices.SortFunc(hist, comparePositions)
		if wantHist := r.model.history(it.Code); !slices.Equal(hist, wantHist) {
			r.t.Errorf("%s: history holds %v, want each of %v once", it.Code, hist, wantHist)
		}
	}
	// The ledger says where each partition resumes.
	topics := map[string]bool{}
	for k := range r.next {
		topics[k.topic] = true
	}
	led, err := r.sink.Offsets(r.ctx, slices.Collect(maps.Keys(topics)))
	if err != nil {
		r.t.Fatalf("offsets: %v", err)
	}
	for k, want := range r.model.ledger {
		if got := led[k.topic][k.part]; got != want {
			r.t.Errorf("ledger of %s/%d: next offset %d, want %d", k.topic, k.part, got, want)
		}
	}
}

// model is the reference: what a sink must hold after the records applied.
type model struct {
	state  map[string]map[string]int64  // item -> key -> offset of its last change
	hist   map[string]map[Position]bool // item -> positions with an event
	ledger map[tp]int64
	byCode map[string]*catalog.Item
}

func newModel() *model {
	return &model{state: map[string]map[string]int64{}, hist: map[string]map[Position]bool{}, ledger: map[tp]int64{}, byCode: map[string]*catalog.Item{}}
}

// apply applies records, skipping what the ledger passed, as a sink must.
func (m *model) apply(batch []pipeline.Record) {
	for _, rec := range batch {
		code := rec.Item.Code
		m.byCode[code] = rec.Item
		k := tp{rec.Item.Topic(), rec.Partition}
		if rec.Offset < m.ledger[k] {
			continue
		}
		m.ledger[k] = rec.Offset + 1
		if rec.Event == nil {
			continue
		}
		if m.state[code] == nil {
			m.state[code], m.hist[code] = map[string]int64{}, map[Position]bool{}
		}
		m.hist[code][Position{rec.Partition, rec.Offset}] = true
		if rec.Event.Op == schemas.OpDelete {
			delete(m.state[code], rec.Event.Key)
		} else {
			m.state[code][rec.Event.Key] = rec.Offset
		}
	}
}

func (m *model) items() []*catalog.Item {
	codes := slices.Sorted(maps.Keys(m.byCode))
	out := make([]*catalog.Item, len(codes))
	for i, c := range codes {
		out[i] = m.byCode[c]
	}
	return out
}

func (m *model) history(code string) []Position {
	return slices.SortedFunc(maps.Keys(m.hist[code]), comparePositions)
}

func key(i int) string { return fmt.Sprintf("K%04d", i) }

func testPerKeyOrder(t *testing.T, r *run) {
	it := r.h.Items[0]
	// Several changes of a key in one batch: the last one wins.
	r.write(
		r.change(it, 0, key(1), schemas.OpCreate),
		r.change(it, 0, key(1), schemas.OpUpdate),
		r.change(it, 0, key(2), schemas.OpCreate),
		r.change(it, 0, key(1), schemas.OpUpdate),
		r.change(it, 0, key(2), schemas.OpSnapshot),
		r.change(it, 0, key(3), schemas.OpCreate),
		r.change(it, 0, key(2), schemas.OpUpdate),
	)
	r.check()
	// And across batches.
	r.write(r.change(it, 0, key(3), schemas.OpUpdate))
	r.write(r.change(it, 0, key(3), schemas.OpUpdate), r.change(it, 0, key(1), schemas.OpUpdate))
	r.check()
}

func testUpdateAfterDelete(t *testing.T, r *run) {
	it := r.h.Items[0]
	r.write(
		r.change(it, 0, key(1), schemas.OpCreate),
		r.change(it, 0, key(1), schemas.OpDelete),
		r.change(it, 0, key(2), schemas.OpCreate),
		r.change(it, 0, key(2), schemas.OpDelete),
		r.change(it, 0, key(2), schemas.OpCreate), // created again in the same batch
		r.change(it, 0, key(3), schemas.OpCreate),
	)
	r.check()
	r.write(
		r.change(it, 0, key(1), schemas.OpUpdate), // an update after the delete, in a later batch
		r.change(it, 0, key(3), schemas.OpDelete),
		r.change(it, 0, key(4), schemas.OpDelete), // a delete of a key never seen
	)
	r.check()
	r.write(r.change(it, 0, key(3), schemas.OpUpdate))
	r.check()
}

func testRedelivery(t *testing.T, r *run) {
	it := r.h.Items[0]
	var recs []pipeline.Record
	for i := range 30 {
		op := schemas.OpCreate
		if i%3 == 2 {
			op = schemas.OpUpdate
		}
		if i%7 == 6 {
			op = schemas.OpDelete
		}
		recs = append(recs, r.change(it, 0, key(i%11), op))
	}
	r.write(recs[:20]...)
	r.write(recs[:20]...) // the same batch again
	r.check()
	r.write(recs[5:12]...) // a stale part of it, alone: must not roll keys back
	r.check()
	r.write(recs[10:]...) // overlapping the last one
	r.write(recs[25:]...) // entirely applied before
	r.check()
}

func testRestart(t *testing.T, r *run) {
	it := r.h.Items[0]
	var recs []pipeline.Record
	for i := range 40 {
		op := schemas.OpUpdate
		if i < 10 {
			op = schemas.OpCreate
		} else if i%9 == 0 {
			op = schemas.OpDelete
		}
		recs = append(recs, r.change(it, 0, key(i%10), op))
	}
	r.write(recs[:15]...)
	// A new sink instance on the same database: it resumes from its ledger.
	r.restart(it)
	off, err := r.sink.Offsets(r.ctx, []string{it.Topic()})
	if err != nil {
		t.Fatal(err)
	}
	if got := off[it.Topic()][0]; got != 15 {
		t.Fatalf("after a restart the ledger resumes at %d, want 15", got)
	}
	// The runner redelivers from the ledger; a redelivery from further back
	// (Kafka's group offsets lagging the ledger) must change nothing either.
	r.write(recs[8:30]...)
	r.restart(it)
	r.write(recs[30:]...)
	r.check()
}

func testAbandoned(t *testing.T, r *run) {
	it := r.h.Items[0]
	r.write(r.change(it, 0, key(1), schemas.OpCreate), r.change(it, 0, key(2), schemas.OpCreate))
	// A batch abandoned by a shutdown: its context is cancelled. The sink
	// must report an error and hold nothing of it.
	lost := []pipeline.Record{r.change(it, 0, key(1), schemas.OpDelete), r.change(it, 0, key(3), schemas.OpCreate)}
	ctx, cancel := context.WithCancel(r.ctx)
	cancel()
	if err := r.sink.Write(ctx, lost, time.Now()); err == nil {
		t.Fatal("a write with a cancelled context reported success")
	}
	r.restart(it)
	r.check() // the model never saw the abandoned batch
	r.write(lost...)
	r.check()
}

func testEvolution(t *testing.T, r *run) {
	it := r.h.Items[0]
	r.write(r.change(it, 0, key(1), schemas.OpCreate), r.change(it, 0, key(2), schemas.OpCreate))
	// The catalog gains an optional field (what BACKWARD compatibility
	// allows); the sink is prepared again while the stream goes on.
	evolved := it.WithFields(append(slices.Clone(it.Fields), &catalog.Field{Name: "sinktest_remark", Title: "备注", Type: catalog.TypeString, Grade: 1}))
	r.restart(evolved)
	a := r.change(evolved, 0, key(1), schemas.OpUpdate)
	a.Event.Data["sinktest_remark"] = "新增字段：变更备注"
	b := r.change(evolved, 0, key(3), schemas.OpCreate)
	b.Event.Data["sinktest_remark"] = nil
	r.write(a, b)
	r.check()
	for k, want := range map[string]string{key(1): "新增字段：变更备注", key(2): "", key(3): ""} {
		got, err := r.h.Field(r.ctx, r.sink, evolved, k, "sinktest_remark")
		if err != nil {
			t.Fatalf("field of %s: %v", k, err)
		}
		if got != want {
			t.Errorf("key %s: sinktest_remark = %q, want %q", k, got, want)
		}
	}
}

func testDeadLettered(t *testing.T, r *run) {
	it := r.h.Items[0]
	r.write(r.change(it, 0, key(1), schemas.OpCreate), r.change(it, 0, "", ""), r.change(it, 0, key(2), schemas.OpCreate))
	r.write(r.change(it, 0, "", "")) // a batch of nothing but a dead letter still moves the ledger
	r.check()
}

func testItemsAndPartitions(t *testing.T, r *run) {
	a, b := r.h.Items[0], r.h.Items[len(r.h.Items)-1] // one item for a single-item sink
	var batch []pipeline.Record
	for i := range 60 {
		it, part := a, int32(i%3)
		if i%2 == 1 {
			it = b
		}
		op := schemas.OpCreate
		if i >= 30 {
			op = schemas.OpUpdate
		}
		if i%13 == 12 {
			op = schemas.OpDelete
		}
		// Keys live in one partition, as the key partitioner guarantees.
		batch = append(batch, r.change(it, part, fmt.Sprintf("P%d-%s", part, key(i%5)), op))
	}
	r.write(batch[:35]...)
	r.write(batch[20:]...)
	r.check()
}

// AsColumns returns the batch as the runner hands it to a ColumnSink: the
// events of each item in one schemas.Columns, Event reduced to its envelope.
func AsColumns(t testing.TB, batch []pipeline.Record) []pipeline.Record {
	t.Helper()
	out := slices.Clone(batch)
	cols := map[*catalog.Item]*schemas.Columns{}
	for i := range out {
		rec := &out[i]
		if rec.Event == nil {
			continue
		}
		c := cols[rec.Item]
		if c == nil {
			c = schemas.NewColumns(rec.Item)
			cols[rec.Item] = c
		}
		if err := c.AppendEvent(rec.Event); err != nil {
			t.Fatalf("sinktest: %v", err)
		}
		rec.Cols, rec.Row, rec.Event = c, c.N-1, c.Envelope(c.N-1)
	}
	return out
}
