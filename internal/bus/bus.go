// Package bus assembles a running Jutong bus on one machine: the embedded
// Kafka cluster, the schema registry and its HTTP API, the item topics and
// the sink pipelines. `jutong dev`, `jutong demo` and the end-to-end tests
// all start the bus through Start, so they exercise the same wiring.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/access"
	"github.com/jutong/jutong/audit"
	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/control"
	"github.com/jutong/jutong/feed"
	"github.com/jutong/jutong/internal/embedded"
	"github.com/jutong/jutong/internal/httpmetrics"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/topics"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/producers/gateway"
	"github.com/jutong/jutong/registry"
	"github.com/jutong/jutong/schemas"
)

// Config configures a bus.
type Config struct {
	Catalog *catalog.Catalog
	// Kafka, when set, is an existing cluster to use instead of the embedded one.
	Kafka *kafkaconn.Config
	// ApplyTopics creates and updates the item topics on start, as
	// `jutong catalog apply` does; otherwise only Jutong's internal topics
	// are created and the item topics are left to catalog apply.
	ApplyTopics bool
	// DataDir holds the embedded cluster's log; empty keeps it in memory.
	DataDir    string
	Brokers    int
	KafkaPorts []int // nil: 9092...; zeros: any free port
	// AdminUser and AdminPassword are the cluster superuser Jutong uses.
	AdminUser, AdminPassword string
	// RegistryAddr is where the schema registry listens (127.0.0.1:8081).
	RegistryAddr string
	// RegistryURL, when set, is an external Confluent-compatible schema
	// registry to use instead of serving Jutong's own.
	RegistryURL string
	// APIAddr is where the HTTP API listens: the ingest gateway and /metrics
	// (127.0.0.1:8080).
	APIAddr string
	// CreateUsers sets the departments' SCRAM users on an existing cluster
	// from credentials.json (always done on the embedded cluster).
	CreateUsers bool
	// SecretsDir holds credentials.json (the departments' SCRAM passwords)
	// and tokens.json (their gateway tokens); default DataDir, or memory.
	SecretsDir string
	// PostgresDSN and ClickHouseDSN select the sinks; empty skips one.
	PostgresDSN, ClickHouseDSN string
	// Pipeline tunes the sink runners (batch size, wait, retries).
	Pipeline pipeline.Config
	// ControlEvery is how often grants are expired and overdue applications
	// escalated; ReadAuditEvery how often the departments' reads are
	// audited (both 1 minute by default).
	ControlEvery, ReadAuditEvery time.Duration
	// Now is the control plane's clock (tests move it).
	Now func() time.Time
	Log *slog.Logger
}

// Bus is a running bus.
type Bus struct {
	cfg     Config
	kafka   kafkaconn.Config
	Cluster *embedded.Cluster // nil when running against an existing cluster
	// Credentials are the departments' SCRAM passwords; Tokens their gateway
	// bearer tokens.
	Credentials access.Credentials
	Tokens      access.Tokens
	// Metrics is the registry every component registers on, served at /metrics.
	Metrics  *prometheus.Registry
	apiURL   string
	api      *http.Server
	pubMu    sync.Mutex
	pubs     map[string]*producers.Publisher
	Registry *registry.Store
	regURL   string
	http     *http.Server
	PG       *pgsink.Sink
	CH       *chsink.Sink
	sinks    []pipeline.Sink
	runners  []*pipeline.Runner
	pcfg     pipeline.Config
	// Control is the access control plane (applications, grants).
	Control *control.Service
	audit   *audit.Writer
	reads   *audit.Reads
	feedMu  sync.Mutex
	feeds   map[string]*feedRun // by grant id
	subLag  *prometheus.GaugeVec
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
}

// Start starts everything; Close stops it.
func Start(ctx context.Context, cfg Config) (_ *Bus, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.RegistryAddr == "" {
		cfg.RegistryAddr = "127.0.0.1:8081"
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = "127.0.0.1:8080"
	}
	if cfg.SecretsDir == "" {
		cfg.SecretsDir = cfg.DataDir
	}
	b := &Bus{cfg: cfg, errs: make(chan error, 4), pubs: map[string]*producers.Publisher{}, feeds: map[string]*feedRun{}}
	b.Metrics = prometheus.NewRegistry()
	b.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if cfg.Kafka != nil {
		b.kafka = *cfg.Kafka
	} else {
		b.Cluster, err = embedded.Start(ctx, embedded.Config{
			Brokers: cfg.Brokers, Ports: cfg.KafkaPorts, DataDir: cfg.DataDir,
			AdminUser: cfg.AdminUser, AdminPassword: cfg.AdminPassword,
		}, cfg.Log)
		if err != nil {
			return nil, err
		}
		b.kafka = b.Cluster.Admin()
	}
	admin, err := b.kafka.Client()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	scope := cfg.Catalog
	if !cfg.ApplyTopics {
		scope = &catalog.Catalog{} // internal topics only
	}
	adm := kadm.NewClient(admin)
	changes, err := topics.Ensure(ctx, adm, scope, InternalTopics()...)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		if c.Action == "cannot" {
			cfg.Log.Warn("topic differs from the catalog", "topic", c.Topic, "detail", c.Detail)
		} else {
			cfg.Log.Info("topic "+c.Action, "topic", c.Topic, "detail", c.Detail)
		}
	}
	credPath, tokPath := "", ""
	if cfg.SecretsDir != "" {
		credPath, tokPath = filepath.Join(cfg.SecretsDir, "credentials.json"), filepath.Join(cfg.SecretsDir, "tokens.json")
	}
	if b.Credentials, err = access.LoadOrCreate(credPath, cfg.Catalog); err != nil {
		return nil, err
	}
	if b.Tokens, err = access.LoadOrCreateTokens(tokPath, cfg.Catalog); err != nil {
		return nil, err
	}
	// On the embedded cluster Jutong owns the departments' users. On a real
	// cluster it sets them only when told to: instances with other secrets
	// would otherwise overwrite each other's passwords.
	if b.Cluster != nil || cfg.CreateUsers {
		if err := access.EnsureUsers(ctx, adm, cfg.Catalog, b.Credentials); err != nil {
			return nil, err
		}
	}
	if cfg.RegistryURL != "" {
		b.regURL = cfg.RegistryURL
		cfg.Log.Info("using an external schema registry", "url", b.regURL)
	} else if err := b.serveRegistry(ctx, admin); err != nil {
		return nil, err
	}

	pcfg := cfg.Pipeline
	pcfg.Kafka = b.kafka
	pcfg.RegistryURL = b.regURL
	pcfg.Catalog = cfg.Catalog
	pcfg.Log = cfg.Log.With("component", "pipeline")
	pcfg.Metrics = b.Metrics
	reg, err := sr.NewClient(sr.URLs(b.regURL))
	if err != nil {
		return nil, err
	}
	pcfg.Decoder = schemas.NewDecoder(reg) // one schema cache for every pipeline
	b.pcfg = pcfg
	rctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	// The control plane: applications and grants. Opening it reconciles the
	// ACLs (the catalog's and the grants') and starts the grants' feeds.
	if err := b.startControl(ctx, rctx); err != nil {
		return nil, err
	}
	if err := b.serveAPI(); err != nil {
		return nil, err
	}
	if cfg.PostgresDSN != "" {
		if b.PG, err = pgsink.New(ctx, pgsink.Config{Name: "postgres", DSN: cfg.PostgresDSN, Themes: cfg.Catalog.Themes}); err != nil {
			return nil, err
		}
		b.sinks = append(b.sinks, b.PG)
	}
	if cfg.ClickHouseDSN != "" {
		if b.CH, err = chsink.New(ctx, "clickhouse", cfg.ClickHouseDSN); err != nil {
			return nil, err
		}
		b.sinks = append(b.sinks, b.CH)
	}
	for _, s := range b.sinks {
		scfg := pcfg
		scfg.ClientMetrics = true
		r, err := pipeline.New(scfg, s)
		if err != nil {
			return nil, err
		}
		b.runners = append(b.runners, r)
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if err := r.Run(rctx); err != nil {
				cfg.Log.Error("pipeline stopped", "sink", s.Name(), "err", err)
				b.errs <- fmt.Errorf("pipeline %s: %w", s.Name(), err)
			}
		}()
	}
	return b, nil
}

// serveRegistry opens the Kafka-backed registry and serves its REST API.
func (b *Bus) serveRegistry(ctx context.Context, admin *kgo.Client) (err error) {
	log := b.cfg.Log
	b.Registry, err = registry.Open(ctx, admin, registry.DefaultTopic, log.With("component", "registry"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", b.cfg.RegistryAddr)
	if err != nil {
		return fmt.Errorf("schema registry: listen on %s: %w", b.cfg.RegistryAddr, err)
	}
	b.regURL = "http://" + ln.Addr().String()
	b.http = &http.Server{Handler: httpmetrics.Wrap(registry.Handler(b.Registry, log), b.Metrics, "registry"), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := b.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("schema registry stopped", "err", err)
		}
	}()
	log.Info("schema registry listening", "url", b.regURL)
	return nil
}

// serveAPI serves the ingest gateway and /metrics on APIAddr.
func (b *Bus) serveAPI() error {
	gw, err := gateway.New(gateway.Config{
		Catalog: b.cfg.Catalog, Tokens: b.Tokens, Publisher: b.publisher,
		Log: b.cfg.Log.With("component", "gateway"), Registerer: b.Metrics,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(b.Metrics, promhttp.HandlerOpts{Registry: b.Metrics}))
	ctl := httpmetrics.Wrap(control.Handler(b.Control, b.Tokens, b.cfg.Log.With("component", "control")), b.Metrics, "control")
	mux.Handle("/v1/applications", ctl)
	mux.Handle("/v1/applications/", ctl)
	mux.Handle("/v1/grants", ctl)
	mux.Handle("/v1/responsibilities", ctl)
	mux.Handle("/", gw.Handler())
	ln, err := net.Listen("tcp", b.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w", b.cfg.APIAddr, err)
	}
	b.apiURL = "http://" + ln.Addr().String()
	b.api = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := b.api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.cfg.Log.Error("api stopped", "err", err)
		}
	}()
	b.cfg.Log.Info("api listening (gateway, /metrics)", "url", b.apiURL)
	return nil
}

// publisher returns the gateway's publisher for a department.
func (b *Bus) publisher(ctx context.Context, dept string) (*producers.Publisher, error) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if p, ok := b.pubs[dept]; ok {
		return p, nil
	}
	d := b.cfg.Catalog.Department(dept)
	if d == nil {
		return nil, fmt.Errorf("unknown department %q", dept)
	}
	p, err := producers.New(ctx, b.cfg.Catalog, dept, producers.Brokers(b.kafka.Brokers...),
		producers.SASL(d.Principal, b.Credentials[d.Principal]), producers.Registry(b.regURL),
		producers.Adapter("http"), producers.System("http-gateway"), producers.Metrics(b.Metrics),
		producers.Logger(b.cfg.Log.With("component", "gateway", "department", dept)))
	if err != nil {
		return nil, err
	}
	b.pubs[dept] = p
	return p, nil
}

// APIURL is the base URL of the gateway and /metrics.
func (b *Bus) APIURL() string { return b.apiURL }

// InternalTopics are the topics Jutong itself needs besides the items' (the
// registry creates its own).
func InternalTopics() []topics.Spec {
	return []topics.Spec{
		{Name: pipeline.DeadLetterTopic, Partitions: 3, Configs: map[string]string{"retention.ms": "-1", "cleanup.policy": "delete"}},
		{Name: producers.QuarantineTopic, Partitions: 3, Configs: map[string]string{"retention.ms": "-1", "cleanup.policy": "delete"}},
		{Name: producers.CheckpointTopic, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}},
		{Name: control.Topic, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}},
		{Name: feed.LedgerTopic, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}},
		{Name: audit.Topic, Partitions: 1, Configs: map[string]string{"retention.ms": "-1", "cleanup.policy": "delete"}},
		{Name: audit.PositionsTopic, Partitions: 1, Configs: map[string]string{"cleanup.policy": "compact"}},
	}
}

// RegistryURL is the schema registry's base URL.
func (b *Bus) RegistryURL() string { return b.regURL }

// Kafka returns the connection settings Jutong's components use.
func (b *Bus) Kafka() kafkaconn.Config { return b.kafka }

// Errors delivers pipeline failures (a pipeline that stopped for good).
func (b *Bus) Errors() <-chan error { return b.errs }

// Lag returns, per sink, how many records of the item topics are not yet in
// the sink's ledger.
func (b *Bus) Lag(ctx context.Context) (map[string]int64, error) {
	admin, err := b.kafka.Client()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	var names []string
	for _, it := range b.cfg.Catalog.Items {
		names = append(names, it.Topic())
	}
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, s := range b.sinks {
		var accepted []string
		for _, it := range b.cfg.Catalog.Items {
			if s.Accepts(it) {
				accepted = append(accepted, it.Topic())
			}
		}
		ledger, err := s.Offsets(ctx, accepted)
		if err != nil {
			return nil, err
		}
		var lag int64
		for _, t := range accepted {
			ends.Each(func(o kadm.ListedOffset) {
				if o.Topic == t {
					lag += max(0, o.Offset-ledger[t][o.Partition])
				}
			})
		}
		out[s.Name()] = lag
	}
	return out, nil
}

// WaitCaughtUp waits until every sink's ledger reached the end of every topic.
func (b *Bus) WaitCaughtUp(ctx context.Context) error {
	for {
		lag, err := b.Lag(ctx)
		if err == nil {
			done := true
			for _, l := range lag {
				done = done && l == 0
			}
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sinks not caught up (lag %v): %w", lag, ctx.Err())
		case err := <-b.errs:
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close stops the pipelines (finishing or abandoning their open batch), the
// registry and the cluster, which flushes its log to disk.
func (b *Bus) Close() {
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
	b.stopFeeds()
	if b.Control != nil {
		b.Control.Close()
	}
	if b.reads != nil {
		b.reads.Close()
	}
	if b.audit != nil {
		b.audit.Close()
	}
	if b.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.api.Shutdown(ctx)
		cancel()
	}
	b.pubMu.Lock()
	for _, p := range b.pubs {
		p.Close()
	}
	b.pubMu.Unlock()
	if b.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.http.Shutdown(ctx)
		cancel()
	}
	if b.Registry != nil {
		b.Registry.Close()
	}
	for _, s := range b.sinks {
		s.Close()
	}
	if b.Cluster != nil {
		b.Cluster.Close()
	}
}
