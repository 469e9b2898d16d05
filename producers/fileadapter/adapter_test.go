package fileadapter_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/producers/fileadapter"
	"github.com/jutong/jutong/schemas"
)

const item = "legal_person.enterprise_registration"

// csvOf renders records as a CSV extract with a header of field names.
func csvOf(t *testing.T, it *catalog.Item, recs []map[string]any) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	var header []string
	for _, f := range it.Fields {
		header = append(header, f.Name)
	}
	_ = w.Write(header)
	for _, r := range recs {
		row := make([]string, len(it.Fields))
		for i, f := range it.Fields {
			if v := schemas.PortableValue(f, r[f.Name]); v != nil {
				row[i] = strings.Trim(mustJSON(t, v), `"`)
			}
		}
		_ = w.Write(row)
	}
	w.Flush()
	return buf.Bytes()
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExtractsBecomeChanges(t *testing.T) {
	it, b, pub := start(t)
	cfg := fileadapter.Config{Item: it, Publisher: pub, State: filepath.Join(t.TempDir(), "state.json")}
	ctx := context.Background()

	gen := synth.New(it, 8, time.Now())
	gen.UpdateEvery, gen.DeleteEvery = 0, 0
	var recs []map[string]any
	for i := 0; i < 100; i++ {
		recs = append(recs, gen.Next().Data)
	}
	var bar bytes.Buffer
	first := cfg
	first.Progress = &bar // what a terminal shows
	sum, err := run(ctx, first, bytes.NewReader(csvOf(t, it, recs)), fileadapter.CSV)
	if err != nil || sum.Created != 100 || sum.Rows != 100 || sum.Rejected != 0 {
		t.Fatalf("first extract: %v %v", sum, err)
	}
	if !strings.Contains(bar.String(), "[=========================] 100%  100/100 changes") {
		t.Errorf("progress bar: %q", bar.String())
	}
	// The second extract: 10 changed, 5 gone, 7 new, a bad value, a repeated key.
	next := append([]map[string]any(nil), recs[5:]...)
	for i := 0; i < 10; i++ {
		c := map[string]any{}
		for k, v := range next[i] {
			c[k] = v
		}
		c["address"] = "重庆市两江新区金渝大道99号"
		next[i] = c
	}
	for i := 0; i < 7; i++ {
		next = append(next, gen.Next().Data)
	}
	extract := csvOf(t, it, next)
	dup := strings.SplitN(string(extract), "\n", 3)[1] // the first data line again
	badLine := strings.Replace(strings.SplitN(string(csvOf(t, it, []map[string]any{gen.Next().Data})), "\n", 3)[1], ",CNY,", ",CNY,", 1)
	badFields := strings.Split(badLine, ",")
	for i, f := range it.Fields {
		if f.Name == "established_on" {
			badFields[i] = "2020年5月1日"
		}
	}
	extract = append(extract, []byte(dup+"\n"+strings.Join(badFields, ",")+"\n")...)
	sum, err = run(ctx, cfg, bytes.NewReader(extract), fileadapter.CSV)
	if err != nil || sum.Updated != 10 || sum.Deleted != 5 || sum.Created != 7 || sum.Unchanged != 85 || sum.Rejected != 2 {
		t.Fatalf("second extract: %v %v", sum, err)
	}
	// The same content again, as JSON lines: nothing changes.
	var jl bytes.Buffer
	for _, r := range next {
		data, _ := schemas.JSONValues(it, r)
		jl.Write(append(data, '\n'))
	}
	sum, err = run(ctx, cfg, &jl, fileadapter.JSONL)
	if err != nil || sum.Unchanged != 102 || sum.Created+sum.Updated+sum.Deleted+sum.Rejected != 0 {
		t.Fatalf("an unchanged extract: %v %v", sum, err)
	}

	cl, err := b.Kafka().Client(kgo.ConsumeTopics(item), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s, _ := schemas.For(it)
	ops := map[schemas.Op]int{}
	for n := 0; n < 122; {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		fs := cl.PollFetches(c)
		cancel()
		if err := fs.Err0(); err != nil {
			t.Fatalf("after %d records: %v", n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			_, payload, _ := schemas.Unframe(r.Value)
			e, err := schemas.Decode(s.Avro, payload)
			if err != nil {
				t.Fatal(err)
			}
			ops[e.Op]++
			n++
		})
	}
	if ops[schemas.OpCreate] != 107 || ops[schemas.OpUpdate] != 10 || ops[schemas.OpDelete] != 5 {
		t.Fatalf("topic ops %v", ops)
	}
	q, _ := b.Kafka().Client(kgo.ConsumeTopics(producers.QuarantineTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer q.Close()
	rules := map[string]int{}
	for len(rules) < 2 {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		fs := q.PollFetches(c)
		cancel()
		if err := fs.Err0(); err != nil {
			t.Fatalf("quarantine: %v (rules so far %v)", err, rules)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var rej producers.Rejected
			_ = json.Unmarshal(r.Value, &rej)
			rules[rej.Rule+"/"+rej.Field]++
		})
	}
	if rules["key.duplicate/uscc"] != 1 || rules["schema.type/established_on"] != 1 {
		t.Fatalf("quarantined %v", rules)
	}
}

// start starts a bus (one embedded broker) and a publisher of the item's
// source, both closed when the test ends.
func start(t *testing.T) (*catalog.Item, *bus.Bus, *producers.Publisher) {
	t.Helper()
	cat, _ := catalog.Sample()
	it := cat.Item(item)
	b, err := bus.Start(context.Background(), bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	p := cat.Department(it.Source).Principal
	pub, err := producers.New(context.Background(), cat, it.Source, connect.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p], Registry: b.RegistryURL()}, producers.Adapter("file"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return it, b, pub
}

// run publishes one extract with a new adapter, as `jutong adapter file` does.
func run(ctx context.Context, cfg fileadapter.Config, r io.Reader, f fileadapter.Format) (fileadapter.Summary, error) {
	cfg.Extract, cfg.Format = r, f
	a, err := fileadapter.New(ctx, cfg)
	if err != nil {
		return fileadapter.Summary{}, err
	}
	err = a.Run(ctx)
	return a.Summary(), err
}

// TestCorrectionsNamedInTheExtract: a column of the extract names the
// dispute a row's change corrects; the change is published naming it (the
// inbox header jutong.corrects), a row that did not change publishes
// nothing whatever it names, and the column is no field of the record.
func TestCorrectionsNamedInTheExtract(t *testing.T) {
	it, b, pub := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := fileadapter.Config{Item: it, Publisher: pub, State: filepath.Join(t.TempDir(), "state.json"), CorrectsColumn: "corrects"}
	gen := synth.New(it, 9, time.Now())
	gen.UpdateEvery, gen.DeleteEvery = 0, 0
	var recs []map[string]any
	for range 3 {
		recs = append(recs, gen.Next().Data)
	}
	jsonl := func(corrects ...string) io.Reader {
		var buf bytes.Buffer
		for i, r := range recs {
			line := map[string]any{}
			for _, f := range it.Fields {
				line[f.Name] = schemas.PortableValue(f, r[f.Name])
			}
			if i < len(corrects) {
				line["corrects"] = corrects[i]
			}
			buf.WriteString(mustJSON(t, line) + "\n")
		}
		return &buf
	}
	if sum, err := run(ctx, cfg, jsonl(), fileadapter.JSONL); err != nil || sum.Created != 3 {
		t.Fatalf("first extract: %+v %v", sum, err)
	}
	// Row 0 corrected (its capital changed) naming dsp-file-1; row 1 names
	// dsp-file-2 but did not change.
	recs[0] = maps.Clone(recs[0])
	recs[0]["registered_capital"] = big.NewRat(500, 1)
	if sum, err := run(ctx, cfg, jsonl("dsp-file-1", "dsp-file-2"), fileadapter.JSONL); err != nil || sum.Updated != 1 || sum.Unchanged != 2 || sum.Rejected != 0 {
		t.Fatalf("second extract: %+v %v", sum, err)
	}
	named := testenv.NamedCorrections(ctx, t, b.Kafka(), it.Source, 4)
	key := recs[0][it.Key].(string)
	if len(named) != 1 || named[0] != key+"=dsp-file-1" {
		t.Errorf("changes naming a dispute: %v, want the update of %s naming dsp-file-1", named, key)
	}
}
