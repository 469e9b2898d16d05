package clients_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/cli"
	"github.com/jutong/jutong/internal/freeport"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/internal/tlsca"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dispute"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	enterprise = "legal_person.enterprise_registration" // market supervision's; tax reads it in clear
	resident   = "population.resident_registration"     // public security's; tax reads a masked feed
	rating     = "legal_person.tax_credit_rating"       // tax's own: each client publishes one
	dept       = "tax"
)

// client is one third-party recipe: the command that runs it.
type client struct {
	name string
	cmd  func(t *testing.T) []string // nil: unavailable (skipped, or failed with CI=true)
}

// TestStandardClients runs a department's subscriber and publisher written
// with standard third-party Kafka and Confluent schema-registry libraries
// (kafkajs with @kafkajs/confluent-schema-registry, Confluent's
// @confluentinc/kafka-javascript with @confluentinc/schemaregistry, and
// Debian's python3-confluent-kafka) against `jutong dev` over SASL_SSL with
// its CA: each decodes every record of a granted item's topic and of a
// masked feed, value for value as the Go SDK reads them, while disputes are
// raised and corrected (their flags on the flags topics), and publishes one
// change to its department's inbox that lands.
func TestStandardClients(t *testing.T) {
	clients := []client{
		{"kafkajs", nodeClient("kafkajs.js")},
		{"confluent-kafka-javascript", nodeClient("confluent.js")},
		{"python3-confluent-kafka", pythonClient},
	}
	ready := clients[:0:0]
	for _, c := range clients {
		if cmd := c.cmd(t); cmd != nil {
			ready = append(ready, c)
		}
	}
	if len(ready) == 0 {
		t.Skip("no third-party client available")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	d := startDev(ctx, t)
	cat, _ := catalog.Sample()

	// Tax reads enterprises in clear and residents through a masked feed;
	// civil affairs reads residents in clear (it raises a dispute there).
	d.grant(ctx, t, dept, control.Request{Item: enterprise, Purpose: "纳税信用评价"}, "big_data")
	d.grant(ctx, t, dept, control.Request{Item: resident, Purpose: "个税专项附加扣除核验", Fields: []string{"citizen_id", "name", "division_code", "phone"}, Grade: 2},
		"big_data", "public_security")
	d.grant(ctx, t, "civil_affairs", control.Request{Item: resident, Purpose: "低保核查", Grade: 4}, "big_data", "public_security")
	feedTopic := d.feedOf(ctx, t, resident)

	ents := d.publish(ctx, t, cat, enterprise, 25, 31)
	ress := d.publish(ctx, t, cat, resident, 25, 32)
	// One event id ends every client's reading: the last change of each
	// item, published after the disputes (an id is unique per item).
	stop := uuid.NewString()

	// The clients, each in a group of its own, with its own change to publish.
	type run struct {
		client
		own  *schemas.Event
		out  *lineBuffer
		errs bytes.Buffer
		done chan error
	}
	var runs []*run
	gen := synth.New(cat.Item(rating), 33, time.Now())
	gen.DeleteEvery, gen.UpdateEvery = 0, 0
	for _, c := range ready {
		r := &run{client: c, own: gen.Next(), out: &lineBuffer{}, done: make(chan error, 1)}
		r.own.Source = schemas.Source{Department: dept, System: c.name, Adapter: "recipe"}
		r.own.PublishTime = time.Now() // the door stamps its own
		job := filepath.Join(t.TempDir(), "produce.json")
		writeJSON(t, job, map[string]any{"item": rating, "event": envelope(cat.Item(rating), r.own)})
		args := c.cmd(t)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), d.clientEnv(dept)...)
		cmd.Env = append(cmd.Env, "JUTONG_TOPICS="+enterprise+","+feedTopic, "JUTONG_GROUP="+dept+".recipe-"+c.name,
			"JUTONG_STOP_EVENT="+stop, "JUTONG_PRODUCE="+job, "JUTONG_TIMEOUT_S=300")
		cmd.Stdout, cmd.Stderr = r.out, &r.errs
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		go func() { r.done <- cmd.Wait() }()
		runs = append(runs, r)
	}
	// Every client reads what was published before the disputes.
	for _, r := range runs {
		r.out.waitFor(ctx, t, r.name, func(lines []line) bool {
			return count(lines, "record", enterprise) >= len(ents) && count(lines, "record", feedTopic) >= len(ress)
		}, r.done, &r.errs)
	}

	// While they read: tax disputes an enterprise, civil affairs a resident;
	// the sources correct both records.
	entKey, resKey := ents[0].Key, ress[0].Key
	d1 := d.raise(ctx, t, dept, dispute.Request{Item: enterprise, Key: entKey, Fields: []string{"registered_capital"}, Claim: "注册资本应为 800 万元"})
	d2 := d.raise(ctx, t, "civil_affairs", dispute.Request{Item: resident, Key: resKey, Fields: []string{"name"}, Claim: "姓名有误"})
	fixEnt := *ents[0]
	fixEnt.ID, fixEnt.Op, fixEnt.Data = uuid.NewString(), schemas.OpUpdate, maps.Clone(ents[0].Data)
	fixEnt.Data["registered_capital"] = big.NewRat(800, 1)
	fixRes := *ress[0]
	fixRes.ID, fixRes.Op, fixRes.Data = uuid.NewString(), schemas.OpUpdate, maps.Clone(ress[0].Data)
	d.correct(ctx, t, cat, enterprise, d1, &fixEnt)
	d.correct(ctx, t, cat, resident, d2, &fixRes)
	d.waitCorrected(ctx, t, dept, d1)
	d.waitCorrected(ctx, t, "civil_affairs", d2)
	// The stop events, published last.
	stopEnt, stopRes := *ents[1], *ress[1]
	stopEnt.ID, stopEnt.Op, stopEnt.Data = stop, schemas.OpUpdate, maps.Clone(ents[1].Data)
	stopRes.ID, stopRes.Op, stopRes.Data = stop, schemas.OpUpdate, maps.Clone(ress[1].Data)
	d.publishEvents(ctx, t, cat, enterprise, &stopEnt)
	d.publishEvents(ctx, t, cat, resident, &stopRes)

	// The Go SDK's reading of the same topics is the reference.
	want := d.reference(ctx, t, cat, []string{enterprise, resident}, len(ents)+2+len(ress)+2)
	clear := map[string]bool{} // every clear citizen id of the residents
	for _, e := range append(ress, &fixRes, &stopRes) {
		clear[e.Key] = true
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			select {
			case err := <-r.done:
				if err != nil {
					t.Fatalf("exited: %v\n%s\n%s", err, r.errs.String(), tail(r.out.String()))
				}
			case <-ctx.Done():
				t.Fatalf("did not finish: %s", r.errs.String())
			}
			lines := r.out.lines()
			byPos := map[string]line{}
			for _, l := range lines {
				if l.Kind == "record" {
					byPos[l.pos()] = l
				}
			}
			// Every record of both topics, value for value as the SDK reads it.
			for pos, w := range want {
				got, ok := byPos[pos]
				if !ok {
					t.Errorf("%s not read", pos)
					continue
				}
				if g, e := canonical(t, got.Event), canonical(t, w); g != e {
					t.Errorf("%s decoded as\n  %s\nthe SDK reads\n  %s", pos, g, e)
				}
				if got.Key != w["key"] {
					t.Errorf("%s: key %q, want %q", pos, got.Key, w["key"])
				}
			}
			if len(byPos) != len(want) {
				t.Errorf("read %d records, the topics hold %d", len(byPos), len(want))
			}
			// The masked feed: no clear citizen id anywhere in what it read of it.
			for _, l := range lines {
				if l.Topic == feedTopic {
					for id := range clear {
						if strings.Contains(string(l.raw), id) {
							t.Fatalf("a clear citizen id reached the client through the masked feed: %s", l.raw)
						}
					}
				}
			}
			// The corrections came flagged; the flags were raised then cleared.
			flagged := map[string]string{}
			for _, l := range lines {
				if l.Kind == "record" && l.Disputes != "" {
					flagged[l.Event["event_id"].(string)] = l.Disputes
				}
			}
			if flagged[fixEnt.ID] != d1 || flagged[fixRes.ID] != d2 || len(flagged) != 2 {
				t.Errorf("changes with a disputes header: %v, want the two corrections (%s, %s)", flagged, d1, d2)
			}
			for topic, id := range map[string]string{enterprise: d1, feedTopic: d2} {
				var seq []string
				for _, l := range lines {
					if l.Kind == "flag" && l.Topic == topicname.Flags(topic) {
						seq = append(seq, fmt.Sprint(l.Flag["disputes"]))
						if topic == feedTopic && clear[l.Key] {
							t.Errorf("the feed's flags show a clear key: %s", l.raw)
						}
						if topic == enterprise && l.Key != entKey {
							t.Errorf("a flag of another record: %s", l.raw)
						}
					}
				}
				if !slices.Equal(seq, []string{"[" + id + "]", "[]"}) {
					t.Errorf("%s's flags: %v, want [%s] then []", topicname.Flags(topic), seq, id)
				}
			}
			// Its own change was accepted and landed, stamped with tax as its source.
			var landed *line
			for i := range lines {
				if lines[i].Kind == "landed" {
					landed = &lines[i]
				}
			}
			if landed == nil || landed.Event["event_id"] != r.own.ID || fmt.Sprint(landed.Event["source"]) != "map[adapter:recipe department:"+dept+" system:"+r.name+"]" {
				t.Errorf("its own change did not land as it sent it, with tax stamped as its source: %+v", landed)
			}
			d.inPostgres(ctx, t, cat.Item(rating), r.own.ID)
			t.Logf("%d records of %s and %s decoded as the SDK reads them, %d flags; its own change %s landed at %s",
				len(byPos), enterprise, feedTopic, count(lines, "flag", topicname.Flags(enterprise))+count(lines, "flag", topicname.Flags(feedTopic)), r.own.ID, landed.pos())
			if os.Getenv("JUTONG_CLIENTS_KEEP") != "" {
				_ = os.WriteFile(filepath.Join(os.Getenv("JUTONG_CLIENTS_KEEP"), r.name+".jsonl"), []byte(r.out.String()), 0o644)
			}
		})
	}
}

// line is one JSON line a client printed.
type line struct {
	Kind      string         `json:"kind"`
	Topic     string         `json:"topic"`
	Partition int            `json:"partition"`
	Offset    json.Number    `json:"offset"`
	Key       string         `json:"key"`
	Disputes  string         `json:"disputes"`
	Event     map[string]any `json:"event"`
	Flag      map[string]any `json:"flag"`
	raw       []byte
}

func (l line) pos() string { return fmt.Sprintf("%s/%d@%s", l.Topic, l.Partition, l.Offset) }

func count(lines []line, kind, topic string) int {
	n := 0
	for _, l := range lines {
		if l.Kind == kind && l.Topic == topic {
			n++
		}
	}
	return n
}

// lineBuffer collects a client's output.
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lineBuffer) lines() []line {
	var out []line
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l line
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if d.Decode(&l) == nil {
			l.raw = append([]byte(nil), sc.Bytes()...)
			out = append(out, l)
		}
	}
	return out
}

func (b *lineBuffer) waitFor(ctx context.Context, t *testing.T, name string, ok func([]line) bool, done chan error, errs *bytes.Buffer) {
	t.Helper()
	for !ok(b.lines()) {
		select {
		case err := <-done:
			t.Fatalf("%s exited early: %v\n%s\n%s", name, err, errs.String(), tail(b.String()))
		case <-ctx.Done():
			t.Fatalf("%s: %v\n%s", name, ctx.Err(), tail(b.String()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}

// canonical renders a decoded event the same way whatever decoded it:
// JSON with sorted keys, numbers as written.
func canonical(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	_ = d.Decode(&x)
	out, _ := json.Marshal(x)
	return string(out)
}

// envelope is an event as its Avro envelope's JSON: the form every recipe
// prints, and reads for the change it publishes (exact decimals, YYYY-MM-DD
// dates, ISO-8601 UTC timestamps with milliseconds).
func envelope(it *catalog.Item, e *schemas.Event) map[string]any {
	var data any
	if e.Data != nil {
		data = schemas.PortableRecord(it, e.Data)
	}
	ts := func(tm time.Time) string { return tm.UTC().Format("2006-01-02T15:04:05.000Z") }
	return map[string]any{
		"event_id": e.ID, "op": string(e.Op), "key": e.Key, "data": data,
		"source":     map[string]any{"department": e.Source.Department, "system": e.Source.System, "adapter": e.Source.Adapter},
		"event_time": ts(e.EventTime), "publish_time": ts(e.PublishTime),
	}
}

func writeJSON(t *testing.T, path string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// required is how a missing tool is met: a failure with CI=true, else a skip
// of that client alone (nil).
func required(t *testing.T, what string, err error) []string {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: %v (scripts/deps.sh installs it)", what, err)
	}
	t.Logf("skipping the %s client: %v", what, err)
	return nil
}

// nodeClient runs a recipe of clients/node with its locked packages,
// installed once per lock file into a cache outside the checkout (npm ci;
// @confluentinc/kafka-javascript builds librdkafka against Debian's
// libraries when its prebuilt binary cannot be downloaded).
func nodeClient(script string) func(t *testing.T) []string {
	var once sync.Once
	var modules string
	var err error
	return func(t *testing.T) []string {
		once.Do(func() { modules, err = nodeModules() })
		if err != nil {
			return required(t, "Node.js packages of clients/node", err)
		}
		node, lerr := exec.LookPath("node")
		if lerr != nil {
			return required(t, "node", lerr)
		}
		return []string{"env", "NODE_PATH=" + modules, node, filepath.Join(repoDir(), "clients", "node", script)}
	}
}

// nodeModules installs clients/node's locked packages into the cache (once
// per lock) and returns their node_modules.
func nodeModules() (string, error) {
	src := filepath.Join(repoDir(), "clients", "node")
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(lock)
	dir := filepath.Join(cacheDir(), "node-"+hex.EncodeToString(sum[:6]))
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(dir, ".installed")); err == nil {
		return modules, nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return "", err
		}
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CKJS_LINKING=dynamic") // librdkafka against Debian's zlib, OpenSSL, zstd, curl, SASL
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in %s: %v\n%s", dir, err, tail(string(out)))
	}
	return modules, os.WriteFile(filepath.Join(dir, ".installed"), nil, 0o644)
}

func cacheDir() string {
	if d := os.Getenv("JUTONG_CACHE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/jutong"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "jutong")
	}
	return filepath.Join(os.TempDir(), "jutong-cache")
}

func repoDir() string {
	wd, _ := os.Getwd() // the package's directory: clients/
	return filepath.Dir(wd)
}

// pythonClient runs clients/python/subscriber.py with Debian's python3 (the
// one Debian's python3-confluent-kafka and python3-avro are installed for).
func pythonClient(t *testing.T) []string {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import confluent_kafka, avro, confluent_kafka.schema_registry").CombinedOutput(); err != nil {
		return required(t, "python3-confluent-kafka and python3-avro", fmt.Errorf("%v: %s", err, out))
	}
	return []string{py, filepath.Join(repoDir(), "clients", "python", "subscriber.py")}
}

// dev is a running `jutong dev`.
type dev struct {
	dir string
	env map[string]string
	hc  *http.Client
	cat *catalog.Catalog
}

func startDev(ctx context.Context, t *testing.T) *dev {
	t.Helper()
	pg, ch := testenv.Postgres(t), testenv.ClickHouse(t)
	dir := t.TempDir()
	ports, err := freeport.Take(3)
	if err != nil {
		t.Fatal(err)
	}
	kp := make([]string, len(ports))
	for i, p := range ports {
		kp[i] = strconv.Itoa(p)
	}
	rctx, stop := context.WithCancel(context.Background())
	var out, errOut lineBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- cli.Run(rctx, []string{"dev", "--apply", "--data-dir", dir, "--kafka-ports", strings.Join(kp, ","),
			"--registry-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--postgres-dsn", pg, "--clickhouse-dsn", ch}, &out, &errOut)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-exited:
		case <-time.After(time.Minute):
			t.Error("jutong dev did not stop")
		}
	})
	for !strings.Contains(out.String(), "Jutong is running") {
		select {
		case code := <-exited:
			t.Fatalf("jutong dev exited %d: %s", code, errOut.String())
		case <-ctx.Done():
			t.Fatalf("jutong dev did not start: %s", errOut.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	d := &dev{dir: dir, env: map[string]string{}}
	d.cat, _ = catalog.Sample()
	b, err := os.ReadFile(filepath.Join(dir, "jutong.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(k, "#") {
			d.env[k] = v
		}
	}
	tc, err := tlsca.Client(d.env["JUTONG_CA_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	d.hc = &http.Client{Transport: tr, Timeout: time.Minute}
	return d
}

func (d *dev) secrets(t *testing.T, file string) map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile(filepath.Join(d.dir, file))
	if err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return m
}

// clientEnv is what a department's recipe is given: brokers, CA, its
// principal and password, the registry.
func (d *dev) clientEnv(dept string) []string {
	p := d.cat.Department(dept).Principal
	creds := map[string]string{}
	b, _ := os.ReadFile(filepath.Join(d.dir, "credentials.json"))
	_ = json.Unmarshal(b, &creds)
	return []string{"JUTONG_KAFKA_BROKERS=" + d.env["JUTONG_KAFKA_BROKERS"], "JUTONG_CA_FILE=" + d.env["JUTONG_CA_FILE"],
		"JUTONG_KAFKA_USER=" + p, "JUTONG_KAFKA_PASSWORD=" + creds[p], "JUTONG_REGISTRY_URL=" + d.env["JUTONG_REGISTRY_URL"]}
}

// grant applies as dept and has each decider approve, in turn.
func (d *dev) grant(ctx context.Context, t *testing.T, dept string, r control.Request, deciders ...string) {
	t.Helper()
	officers := d.secrets(t, "officers.json")
	app, err := control.NewClient(d.env["JUTONG_API_URL"], officers[dept], d.hc).Apply(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range deciders {
		if app, err = control.NewClient(d.env["JUTONG_API_URL"], officers[who], d.hc).Approve(ctx, app.ID, control.Verdict{Reason: "用途正当"}); err != nil {
			t.Fatalf("%s approves: %v", who, err)
		}
	}
	if app.State != control.Granted {
		t.Fatalf("%s's application: %s", dept, app.State)
	}
}

// feedOf is the masked feed tax reads an item through (Kafka lists the
// topics a principal may describe).
func (d *dev) feedOf(ctx context.Context, t *testing.T, item string) string {
	t.Helper()
	grants, err := control.NewClient(d.env["JUTONG_API_URL"], d.secrets(t, "officers.json")[dept], d.hc).Grants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		if g.Department == dept && g.Item == item {
			return topicname.Feed(dept, item, g.ID)
		}
	}
	t.Fatalf("no grant of %s on %s", dept, item)
	return ""
}

func (d *dev) publisher(ctx context.Context, t *testing.T, cat *catalog.Catalog, source string) *producers.Publisher {
	t.Helper()
	p := cat.Department(source).Principal
	tc, _ := tlsca.Client(d.env["JUTONG_CA_FILE"])
	pub, err := producers.New(ctx, cat, source, connect.Config{Brokers: strings.Split(d.env["JUTONG_KAFKA_BROKERS"], ","), User: p, Password: d.secrets(t, "credentials.json")[p], Registry: d.env["JUTONG_REGISTRY_URL"], TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// publish publishes n synthetic changes of item (creates, updates, deletes).
func (d *dev) publish(ctx context.Context, t *testing.T, cat *catalog.Catalog, item string, n int, seed uint64) []*schemas.Event {
	t.Helper()
	g := synth.New(cat.Item(item), seed, time.Now())
	g.DeleteEvery = 9
	evs := make([]*schemas.Event, 0, n)
	for len(evs) < n {
		if e := g.Next(); e.Op != schemas.OpDelete || len(evs) > 2 { // the first records stay, to be disputed
			evs = append(evs, e)
		}
	}
	d.publishEvents(ctx, t, cat, item, evs...)
	return evs
}

func (d *dev) publishEvents(ctx context.Context, t *testing.T, cat *catalog.Catalog, item string, evs ...*schemas.Event) {
	t.Helper()
	pub := d.publisher(ctx, t, cat, cat.Item(item).Source)
	defer pub.Close()
	if _, err := pub.Publish(ctx, item, evs...); err != nil {
		t.Fatal(err)
	}
}

func (d *dev) call(t *testing.T, dept, method, path string, body, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, d.env["JUTONG_API_URL"]+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+d.secrets(t, "officers.json")[dept])
	resp, err := d.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s as %s: %d %s", method, path, dept, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
}

func (d *dev) raise(ctx context.Context, t *testing.T, dept string, r dispute.Request) string {
	t.Helper()
	var got dispute.Dispute
	d.call(t, dept, "POST", "/v1/disputes", r, &got)
	return got.ID
}

// correct has the record's source publish the correction, naming the dispute.
func (d *dev) correct(ctx context.Context, t *testing.T, cat *catalog.Catalog, item, id string, e *schemas.Event) {
	t.Helper()
	pub := d.publisher(ctx, t, cat, cat.Item(item).Source)
	defer pub.Close()
	if _, err := pub.PublishCorrection(ctx, item, id, e); err != nil {
		t.Fatal(err)
	}
}

func (d *dev) waitCorrected(ctx context.Context, t *testing.T, dept, id string) {
	t.Helper()
	for {
		var got dispute.Dispute
		d.call(t, dept, "GET", "/v1/disputes/"+id, nil, &got)
		if got.State == dispute.Corrected {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dispute %s: %s", id, got.State)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// reference reads tax's view of the items with the Go SDK, n changes in
// all, by position: each as the recipes print it.
func (d *dev) reference(ctx context.Context, t *testing.T, cat *catalog.Catalog, items []string, n int) map[string]map[string]any {
	t.Helper()
	p := cat.Department(dept).Principal
	tc, _ := tlsca.Client(d.env["JUTONG_CA_FILE"])
	sub, err := consumers.New(ctx, cat, dept, items, connect.Config{Brokers: strings.Split(d.env["JUTONG_KAFKA_BROKERS"], ","), User: p, Password: d.secrets(t, "credentials.json")[p], Registry: d.env["JUTONG_REGISTRY_URL"], TLS: tc}, consumers.Group("reference"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	out := map[string]map[string]any{}
	rctx, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	err = sub.Run(rctx, func(_ context.Context, dl consumers.Delivery) error {
		out[fmt.Sprintf("%s/%d@%d", dl.Topic, dl.Partition, dl.Offset)] = envelope(dl.Item, dl.Event)
		if len(out) == n {
			stop()
		}
		return nil
	})
	if err != nil || len(out) != n {
		t.Fatalf("the SDK read %d of %d changes: %v", len(out), n, err)
	}
	return out
}

// inPostgres waits until the change of event id is the row of its key in
// the PostgreSQL base database.
func (d *dev) inPostgres(ctx context.Context, t *testing.T, it *catalog.Item, eventID string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, d.env["JUTONG_PG_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	base, name := it.Namespace()
	for {
		var n int
		_ = conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{base, name}.Sanitize()+" WHERE _event_id::text = $1", eventID).Scan(&n)
		if n == 1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the change %s is not in PostgreSQL", eventID)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
