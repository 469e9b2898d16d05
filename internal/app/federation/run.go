package federation

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/freeport"
	"github.com/jutong/jutong/internal/httpapi"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/localsvc"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/tlsca"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dispute"
)

// Districts are the district buses' names, in the order they are started
// (Chongqing's central districts).
var Districts = []string{"yuzhong", "jiangbei", "nanan", "shapingba", "jiulongpo", "dadukou", "beibei", "yubei", "banan"}

// DefaultReceives are what each district is granted by the city: the
// residents at grade 2 (the citizen ID masked, the address and phone
// dropped) and the enterprises whole.
var DefaultReceives = []Receive{
	{Item: "population.resident_registration", Fields: []string{"citizen_id", "name", "gender", "ethnicity", "birth_date", "division_code", "household_type", "registered_on"}, Grade: 2},
	{Item: "legal_person.enterprise_registration", Grade: 4},
}

// Options say what to run.
type Options struct {
	DataDir   string // each bus's files under <DataDir>/<bus>, the databases under <DataDir>/postgres, clickhouse
	Districts int    // how many district buses (at most len(Districts))
	BasePort  int    // the ports used: BasePort + 10*i + (0 Kafka, 1 registry, 2 API, 3 bridge metrics) for bus i (the city 0)
	// FreePorts, instead, takes the ports from package freeport (free, and
	// locked against other processes of the machine: tests, benchmarks).
	FreePorts bool
	// Command makes the command that runs `jutong args...` (the binary
	// itself, or a test binary standing for it).
	Command  func(args ...string) *exec.Cmd
	Receives []Receive // default DefaultReceives
	Log      *slog.Logger
	Verbose  bool // the children log at info level
}

// Bus is one running bus (a `jutong dev` process).
type Bus struct {
	Name, Dir, CatalogDir, DataDir string
	Catalog                        *catalog.Catalog
	Kafka                          string // brokers
	Registry, API                  string // URLs
	PGDSN, CHDSN                   string
	args                           []string
	proc                           *Proc
}

// CAFile is the CA its clients trust.
func (b *Bus) CAFile() string { return filepath.Join(b.DataDir, "tls", "ca.pem") }

// Credentials are its departments' passwords.
func (b *Bus) Credentials() (access.Credentials, error) {
	return access.ReadCredentials(filepath.Join(b.DataDir, "credentials.json"))
}

// Admin is how its admin reaches its brokers (the Kafka superuser jutong
// dev keeps in jutong.env).
func (b *Bus) Admin() (kafkaconn.Config, error) {
	raw, err := os.ReadFile(filepath.Join(b.DataDir, "jutong.env"))
	if err != nil {
		return kafkaconn.Config{}, err
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			env[k] = v
		}
	}
	return kafkaconn.Config{Brokers: []string{b.Kafka}, User: env["JUTONG_KAFKA_USER"], Password: env["JUTONG_KAFKA_PASSWORD"], CAFile: b.CAFile()}, nil
}

// Officers are its departments' officer tokens.
func (b *Bus) Officers() (access.Credentials, error) {
	return access.ReadCredentials(filepath.Join(b.DataDir, "officers.json"))
}

// Proc is a child process; Kill ends it as kill -9 does.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Kill kills it with SIGKILL and waits for it.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop ends it with SIGTERM (SIGKILL after a minute) and waits.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.Kill()
	}
}

// Pid is its process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited says whether it has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Federation is a city bus, its district buses and their bridges.
type Federation struct {
	opts      Options
	City      *Bus
	Districts []*Bus
	bridges   []*Proc
	bridgeCmd [][]string
	bridgeEnv [][]string
	ports     [][4]int // per bus (the city 0): Kafka, registry, API, its bridge's metrics
	pg        *localsvc.Postgres
	ch        *localsvc.ClickHouse
	mu        sync.Mutex
}

// Start starts the databases, the city and district buses, the grants of
// the districts on the city, and the bridges.
func Start(ctx context.Context, o Options) (_ *Federation, err error) {
	if o.Districts < 1 || o.Districts > len(Districts) {
		return nil, fmt.Errorf("federation: 1 to %d districts, not %d", len(Districts), o.Districts)
	}
	if o.Receives == nil {
		o.Receives = DefaultReceives
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.DataDir, err = filepath.Abs(o.DataDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, err
	}
	f := &Federation{opts: o}
	if o.FreePorts {
		ps, err := freeport.Take(4 * (o.Districts + 1))
		if err != nil {
			return nil, err
		}
		for i := 0; i <= o.Districts; i++ {
			f.ports = append(f.ports, [4]int(ps[4*i:4*i+4]))
		}
	} else {
		for i := 0; i <= o.Districts; i++ {
			p := o.BasePort + 10*i
			f.ports = append(f.ports, [4]int{p, p + 1, p + 2, p + 3})
		}
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if f.pg, err = localsvc.StartPostgres(ctx, o.Log, localsvc.Options{Dir: filepath.Join(o.DataDir, "postgres")}); err != nil {
		return nil, err
	}
	if f.ch, err = localsvc.StartClickHouse(ctx, o.Log, localsvc.Options{Dir: filepath.Join(o.DataDir, "clickhouse")}); err != nil {
		return nil, err
	}
	names := Districts[:o.Districts]
	f.City = f.newBus(CityBus, 0)
	if err := WriteCity(f.City.CatalogDir, nil, names, 1); err != nil {
		return nil, err
	}
	if f.City.Catalog, err = catalog.Load(os.DirFS(f.City.CatalogDir)); err != nil {
		return nil, err
	}
	for i, n := range names {
		d := f.newBus(n, i+1)
		if err := WriteDistrict(d.CatalogDir, f.City.Catalog, n, o.Receives); err != nil {
			return nil, err
		}
		if d.Catalog, err = catalog.Load(os.DirFS(d.CatalogDir)); err != nil {
			return nil, err
		}
		f.Districts = append(f.Districts, d)
	}
	for _, b := range append([]*Bus{f.City}, f.Districts...) {
		if err := f.StartBus(ctx, b); err != nil {
			return nil, err
		}
	}
	for _, d := range f.Districts {
		if err := f.grant(ctx, d); err != nil {
			return nil, err
		}
	}
	for i, d := range f.Districts {
		if err := f.prepareBridge(d, i+1); err != nil {
			return nil, err
		}
		if err := f.StartBridge(i); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *Federation) newBus(name string, i int) *Bus {
	ps := f.ports[i]
	dir := filepath.Join(f.opts.DataDir, name)
	db := "jutong_" + name
	b := &Bus{Name: name, Dir: dir, CatalogDir: filepath.Join(dir, "catalog"), DataDir: filepath.Join(dir, "data"),
		Kafka: "127.0.0.1:" + strconv.Itoa(ps[0]), Registry: "https://127.0.0.1:" + strconv.Itoa(ps[1]), API: "https://127.0.0.1:" + strconv.Itoa(ps[2]),
		PGDSN: f.pg.DatabaseDSN(db), CHDSN: f.ch.DatabaseDSN(db)}
	b.args = []string{"dev", "--catalog", b.CatalogDir, "--data-dir", b.DataDir, "--apply", "--broker-count", "1",
		"--kafka-ports", strconv.Itoa(ps[0]), "--registry-addr", "127.0.0.1:" + strconv.Itoa(ps[1]), "--api-addr", "127.0.0.1:" + strconv.Itoa(ps[2]),
		"--postgres-dsn", b.PGDSN, "--clickhouse-dsn", b.CHDSN, "--group-prefix", "jutong_" + name + "."}
	if f.opts.Verbose {
		b.args = append(b.args, "-v")
	}
	return b
}

// spawn starts `jutong args` with its output in <dir>/<name>.log.
func (f *Federation) spawn(name, dir string, env []string, args ...string) (*Proc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := f.opts.Command(args...)
	cmd.Env = append(cmd.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("federation: start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), log: lf}
	go func() { _ = cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

// StartBus starts (or starts again) a bus's process and waits until its
// API answers.
func (f *Federation) StartBus(ctx context.Context, b *Bus) error {
	p, err := f.spawn("bus", b.Dir, nil, b.args...)
	if err != nil {
		return err
	}
	f.mu.Lock()
	b.proc = p
	f.mu.Unlock()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if p.Exited() {
			return fmt.Errorf("federation: the %s bus exited at start: %s", b.Name, tail(filepath.Join(b.Dir, "bus.log")))
		}
		if ready(ctx, b) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("federation: the %s bus is not up after 3 minutes: %s", b.Name, tail(filepath.Join(b.Dir, "bus.log")))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// ready says whether the bus's API answers (over its CA).
func ready(ctx context.Context, b *Bus) bool {
	tc, err := tlsca.Client(b.CAFile())
	if err != nil {
		return false
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	req, _ := http.NewRequestWithContext(ctx, "GET", b.API+"/metrics", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	_, err = os.Stat(filepath.Join(b.DataDir, "jutong.env"))
	return err == nil
}

// BusProc is the bus's running process.
func (b *Bus) Proc() *Proc { return b.proc }

// HTTPClient trusts the bus's CA.
func (b *Bus) HTTPClient() (*http.Client, error) {
	tc, err := tlsca.Client(b.CAFile())
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tc}}, nil
}

// TLS is a client TLS configuration trusting the bus's CA.
func (b *Bus) TLS() (*tls.Config, error) { return tlsca.Client(b.CAFile()) }

// grant has district d apply on the city for its receives, and the city's
// authority and each item's source approve.
func (f *Federation) grant(ctx context.Context, d *Bus) error {
	hc, err := f.City.HTTPClient()
	if err != nil {
		return err
	}
	toks, err := f.City.Officers()
	if err != nil {
		return err
	}
	dept := DistrictDepartment(d.Name)
	for _, r := range f.opts.Receives {
		app, err := control.NewClient(f.City.API, toks[dept], hc).Apply(ctx, control.Request{Item: r.Item, Purpose: d.Name + "区业务协同（数据下沉）", Fields: r.Fields, Grade: r.Grade})
		if err != nil {
			return fmt.Errorf("federation: %s applies for %s: %w", dept, r.Item, err)
		}
		for _, by := range []string{f.City.Catalog.Authority, f.City.Catalog.Item(r.Item).Source} {
			if app.State == control.Granted {
				break
			}
			if app, err = control.NewClient(f.City.API, toks[by], hc).Approve(ctx, app.ID, control.Verdict{Reason: "同意下沉"}); err != nil {
				return fmt.Errorf("federation: %s approves %s: %w", by, app.ID, err)
			}
		}
		if app.State != control.Granted {
			return fmt.Errorf("federation: %s's application for %s is %s", dept, r.Item, app.State)
		}
	}
	return nil
}

// prepareBridge works out district d's bridge's command and secrets.
func (f *Federation) prepareBridge(d *Bus, i int) error {
	cityCreds, err := f.City.Credentials()
	if err != nil {
		return err
	}
	distCreds, err := d.Credentials()
	if err != nil {
		return err
	}
	cityOff, err := f.City.Officers()
	if err != nil {
		return err
	}
	distOff, err := d.Officers()
	if err != nil {
		return err
	}
	up := f.City.Catalog.Department(DistrictDepartment(d.Name))
	down := d.Catalog.Department(CityDepartment)
	args := []string{"bridge", "run", "--catalog", d.CatalogDir, "--department", CityDepartment,
		"--brokers", d.Kafka, "--kafka-user", down.Principal, "--ca", d.CAFile(), "--registry", d.Registry,
		"--upstream-brokers", f.City.Kafka, "--upstream-user", up.Principal, "--upstream-ca", f.City.CAFile(), "--upstream-registry", f.City.Registry,
		"--upstream-department", up.Code, "--api", d.API, "--upstream-api", f.City.API, "--metrics-addr", "127.0.0.1:" + strconv.Itoa(f.ports[i][3]), "--rediscover", "2s"}
	if f.opts.Verbose {
		args = append(args, "-v")
	}
	env := []string{"JUTONG_KAFKA_PASSWORD=" + distCreds[down.Principal], "JUTONG_UPSTREAM_PASSWORD=" + cityCreds[up.Principal],
		"JUTONG_OFFICER_TOKEN=" + distOff[down.Code], "JUTONG_UPSTREAM_OFFICER_TOKEN=" + cityOff[up.Code]}
	f.bridgeCmd = append(f.bridgeCmd, args)
	f.bridgeEnv = append(f.bridgeEnv, env)
	f.bridges = append(f.bridges, nil)
	return nil
}

// StartBridge starts (or starts again) the bridge of district i (from 0).
func (f *Federation) StartBridge(i int) error {
	p, err := f.spawn("bridge", f.Districts[i].Dir, f.bridgeEnv[i], f.bridgeCmd[i]...)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.bridges[i] = p
	f.mu.Unlock()
	return nil
}

// Bridge is district i's bridge process.
func (f *Federation) Bridge(i int) *Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bridges[i]
}

// BridgeMetrics is the URL of district i's bridge's metrics.
func (f *Federation) BridgeMetrics(i int) string {
	return "http://127.0.0.1:" + strconv.Itoa(f.ports[i+1][3]) + "/metrics"
}

// Close stops the bridges, the buses and the databases.
func (f *Federation) Close() {
	f.mu.Lock()
	bridges := append([]*Proc(nil), f.bridges...)
	var buses []*Bus
	if f.City != nil {
		buses = append(buses, f.City)
	}
	buses = append(buses, f.Districts...)
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range bridges {
		if p != nil {
			wg.Go(p.Stop)
		}
	}
	wg.Wait()
	for _, b := range buses {
		if b.proc != nil {
			wg.Go(b.proc.Stop)
		}
	}
	wg.Wait()
	if f.ch != nil {
		_ = f.ch.Stop()
	}
	if f.pg != nil {
		_ = f.pg.Stop()
	}
}

// Describe prints where everything is.
func (f *Federation) Describe(w io.Writer) {
	fmt.Fprintf(w, "City bus %q: Kafka %s, registry %s, API %s (files in %s)\n", f.City.Name, f.City.Kafka, f.City.Registry, f.City.API, f.City.Dir)
	for i, d := range f.Districts {
		fmt.Fprintf(w, "District bus %q: Kafka %s, registry %s, API %s (files in %s)\n", d.Name, d.Kafka, d.Registry, d.API, d.Dir)
		fmt.Fprintf(w, "  bridge city -> %s: metrics %s, log %s\n", d.Name, f.BridgeMetrics(i), filepath.Join(d.Dir, "bridge.log"))
	}
	fmt.Fprintf(w, "Each bus's admin for the CLI: set -a; . <files>/data/jutong.env; set +a\n")
	fmt.Fprintf(w, "A received item's state: jutong bridge status --catalog <district>/catalog (with that district's jutong.env)\n")
}

// tail is the end of a log file, for an error.
func tail(path string) string {
	fh, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer fh.Close()
	var lines []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 15 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// Publish publishes n synthetic events of item on the city bus, as the
// item's source (the demo's and the tests' city departments).
func (f *Federation) Publish(ctx context.Context, code string, n int, seed uint64) ([]*schemas.Event, error) {
	it := f.City.Catalog.Item(code)
	if it == nil {
		return nil, fmt.Errorf("federation: no city item %s", code)
	}
	pub, err := f.City.Publisher(ctx, it.Source)
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	g := synth.New(it, seed, time.Now())
	g.DeleteEvery = 0
	evs := make([]*schemas.Event, n)
	for i := range evs {
		evs[i] = g.Next()
	}
	for rest := evs; len(rest) > 0; {
		k := min(len(rest), 500)
		if _, err := pub.Publish(ctx, code, rest[:k]...); err != nil {
			return nil, err
		}
		rest = rest[k:]
	}
	return evs, nil
}

// Publisher is a publisher of the bus as department dept (close it).
func (b *Bus) Publisher(ctx context.Context, dept string) (*producers.Publisher, error) {
	creds, err := b.Credentials()
	if err != nil {
		return nil, err
	}
	tc, err := b.TLS()
	if err != nil {
		return nil, err
	}
	d := b.Catalog.Department(dept)
	if d == nil {
		return nil, fmt.Errorf("federation: %s has no department %s", b.Name, dept)
	}
	return producers.New(ctx, b.Catalog, dept, connect.Config{Brokers: []string{b.Kafka}, User: d.Principal, Password: creds[d.Principal], Registry: b.Registry, TLS: tc}, producers.System("synthetic"))
}

// Call makes an officer's call to the bus's HTTP API as dept, decoding
// the answer into out (when not nil).
func (b *Bus) Call(ctx context.Context, dept, method, path string, body, out any) error {
	hc, err := b.HTTPClient()
	if err != nil {
		return err
	}
	toks, err := b.Officers()
	if err != nil {
		return err
	}
	raw, err := httpapi.Call(ctx, hc, b.API, toks[dept], method, path, body)
	if err != nil {
		return fmt.Errorf("%s %s as %s: %w", method, path, dept, err)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// Correction is what CorrectAcross did: the district's dispute, the city's
// it became, the correcting change and the district's receipts.
type Correction struct {
	District, Down, Up, EventID string
	Receipts                    []dispute.Receipt
}

// CorrectAcross shows a correction crossing the levels: district i's civil
// affairs is granted the received enterprises there and disputes the name
// of enterprise target; the bridge raises the dispute on the city; the
// city's market supervision publishes the corrected record naming it; the
// correction comes down the feed and closes the district's dispute with the
// district's receipts. It returns when it has, or when wait ran out.
func (f *Federation) CorrectAcross(ctx context.Context, i int, target *schemas.Event, wait time.Duration) (*Correction, error) {
	const enterprise = "legal_person.enterprise_registration"
	d := f.Districts[i]
	var app control.Application
	if err := d.Call(ctx, "civil_affairs", "POST", "/v1/applications", control.Request{Item: enterprise, Purpose: "社会救助对象经营情况核查"}, &app); err != nil {
		return nil, err
	}
	for _, by := range []string{d.Catalog.Authority, CityDepartment} {
		if app.State != control.Granted {
			if err := d.Call(ctx, by, "POST", "/v1/applications/"+app.ID+"/approve", control.Verdict{Reason: "同意"}, &app); err != nil {
				return nil, err
			}
		}
	}
	var raised dispute.Dispute
	if err := d.Call(ctx, "civil_affairs", "POST", "/v1/disputes", dispute.Request{Item: enterprise, Key: target.Key, Fields: []string{"name"}, Claim: "企业名称已变更，登记信息未更新"}, &raised); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	var up dispute.Dispute
	for up.ID == "" {
		var list []dispute.Dispute
		if err := f.City.Call(ctx, "market_supervision", "GET", "/v1/disputes", nil, &list); err != nil {
			return nil, err
		}
		for _, x := range list {
			if strings.Contains(x.Claim, raised.ID) && x.RaisedBy == DistrictDepartment(d.Name) {
				up = x
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("federation: %s's dispute %s never reached the city", d.Name, raised.ID)
		}
		time.Sleep(500 * time.Millisecond)
	}
	pub, err := f.City.Publisher(ctx, "market_supervision")
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	fixed := *target
	fixed.ID, fixed.Op = synth.NewUUID(), schemas.OpUpdate
	fixed.Data = maps.Clone(target.Data)
	fixed.Data["name"] = "重庆市" + d.Name + "区更正后名称有限公司"
	if _, err := pub.PublishCorrection(ctx, enterprise, up.ID, &fixed); err != nil {
		return nil, err
	}
	var down dispute.Dispute
	for down.State != dispute.Corrected {
		if err := d.Call(ctx, "civil_affairs", "GET", "/v1/disputes/"+raised.ID, nil, &down); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("federation: %s's dispute %s is %s after the city's correction", d.Name, raised.ID, down.State)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if down.Correction != fixed.ID {
		return nil, fmt.Errorf("federation: %s's dispute was corrected by %s, not the city's %s", d.Name, down.Correction, fixed.ID)
	}
	return &Correction{District: d.Name, Down: raised.ID, Up: up.ID, EventID: fixed.ID, Receipts: down.Receipts}, nil
}
