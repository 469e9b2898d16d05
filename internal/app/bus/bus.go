// Package bus is the composition root of a running Jutong bus: it wires the
// embedded (or an existing) Kafka cluster, the schema registry and its HTTP
// API, the internal topics, the departments' principals, the control plane
// with its grants reconciler (internal/app/grants), the HTTP API (gateway,
// control, /metrics), the sink pipelines and the ClickHouse copies. It holds
// no policy of its own. `jutong dev`, `demo`, `serve` and the end-to-end
// tests all start the bus through Start, so they exercise the same wiring.
package bus

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/apply"
	"github.com/jutong/jutong/internal/app/grants"
	"github.com/jutong/jutong/internal/app/landing"
	"github.com/jutong/jutong/internal/embedded"
	"github.com/jutong/jutong/internal/httpmetrics"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/tlsca"
	"github.com/jutong/jutong/internal/topics"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/pipeline/sinks"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/control"
	"github.com/jutong/jutong/server/dispute"
	"github.com/jutong/jutong/server/door"
	"github.com/jutong/jutong/server/gateway"
	"github.com/jutong/jutong/server/open"
	"github.com/jutong/jutong/server/proposals"
	"github.com/jutong/jutong/server/registry"
	"github.com/jutong/jutong/server/signed"
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
	// KafkaBrokerConfigs are the embedded brokers' settings
	// (embedded.Config.BrokerConfigs), such as log.cleaner.backoff.ms.
	KafkaBrokerConfigs map[string]string
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
	// tokens.json (their publishing tokens) and officers.json (their
	// officers' tokens); default DataDir, or memory.
	SecretsDir string
	// PostgresDSN and ClickHouseDSN are the bus's databases: the
	// PostgreSQL and ClickHouse sinks write them (empty: that sink is off),
	// the lookups and the disputes' flags use the first, the audit trail's
	// copy the second.
	PostgresDSN, ClickHouseDSN string
	// Sinks are the databases of other sink kinds (package sinks), by kind.
	Sinks map[string]string
	// Pipeline tunes the sink runners (batch size, wait, retries).
	Pipeline pipeline.Config
	// ControlEvery is how often grants are expired and overdue applications
	// escalated; ReadAuditEvery how often the departments' reads are
	// audited (both 1 minute by default).
	ControlEvery, ReadAuditEvery time.Duration
	// NoDatabaseRoles leaves the databases' principals alone: no role per
	// department, no grant tables (docs/security.md, Database principals).
	NoDatabaseRoles bool
	// ClickHouseUsersDir is the users.d of a local ClickHouse without SQL
	// access management (18.16), where the analysts' users are written.
	ClickHouseUsersDir string
	// AuthorityAnalysts gives the data authority's analysts every item at
	// AuthorityAnalystGrade (masked above it): a second, masked copy of
	// the analytics store, off by default for its cost.
	AuthorityAnalysts     bool
	AuthorityAnalystGrade int
	// OpenEvery is how often the open releases are refreshed (a minute by
	// default): an item whose table moved gets a new release.
	OpenEvery time.Duration
	// AuditSealEvery is how often the audit writer seals its chain with a
	// signed head (a minute by default).
	AuditSealEvery time.Duration
	// TLS, when set, serves the registry and the API over HTTPS with its
	// certificate, makes the embedded cluster's listeners SASL_SSL, and has
	// the bus's clients trust its CA.
	TLS *tlsca.Files
	// GroupPrefix begins the bus's consumer groups and transactional ids
	// (default "jutong."): <prefix>sink.postgres, <prefix>door, ... A second
	// deployment on the same cluster (another data centre's sinks, a
	// benchmark beside a running bus) takes its own.
	GroupPrefix string
	// DecodeCache, when positive, is how many decoded events the sinks, the
	// feeds and the door of this process share (pipeline.DecodeCache), so
	// that a record is decoded once rather than once per sink. Off by
	// default: with two sinks it saved as much CPU as it cost
	// (docs/benchmarks.md); it pays with more readers of an item (feeds).
	DecodeCache int
	// NoTypedViews skips ClickHouse's typed views of the items (two a
	// item; see docs/analytics.md).
	NoTypedViews bool
	// LookupRate is the lookups a second a grant allows unless it says
	// (default 50).
	LookupRate float64
	// HTTPReadTimeout bounds the time to read a request, body included, on
	// the registry and the API (default 2 minutes): a slow body is cut off.
	HTTPReadTimeout time.Duration
	// IdempotencyWindow is how long the door remembers an accepted event id
	// (default 24h; at most 48h, the retention of _jutong.door_ids).
	IdempotencyWindow time.Duration
	// NoDoor starts the bus without the door on the inboxes (the door
	// benchmark fills them first, then runs a door of its own); the gateway
	// still has one.
	NoDoor bool
	// Now is the control plane's clock (tests move it).
	Now func() time.Time
	Log *slog.Logger
}

// Bus is a running bus.
type Bus struct {
	cfg   Config
	kafka kafkaconn.Config
	kopts []kgo.Opt // kafka as client options, for the components
	// Credentials are the departments' SCRAM passwords; Tokens their
	// publishing (gateway) bearer tokens; Officers their officers' bearer
	// tokens for the control API (apply, approve, refuse, revoke). A
	// publishing token cannot act as an officer, nor an officer's publish.
	Credentials access.Credentials
	Tokens      access.Tokens
	Officers    access.Tokens
	// Metrics is the registry every component registers on, served at /metrics.
	Metrics *prometheus.Registry
	// Registry is the schema registry's store (nil with an external registry).
	Registry *registry.Store
	// Control is the access control plane (applications, grants).
	Control *control.Service
	// Disputes are the disputes of shared records.
	Disputes *dispute.Service
	// Proposals are the catalog's proposals and versions.
	Proposals   *proposals.Service
	disputesRef atomic.Pointer[dispute.Service] // for the feeds, which start first

	cluster *embedded.Cluster // nil when running against an existing cluster
	regURL  string
	apiURL  string
	gw      *gateway.Gateway
	door    *door.Door
	grants  *grants.Reconciler
	feeds   *grants.FeedRunner
	audit   *audit.Writer
	reads   *audit.Reads
	subLag  *prometheus.GaugeVec
	sinks   []pipeline.Sink
	// feedKey is the secret the grants' pseudonymous keys derive from.
	feedKey []byte
	// auditKey signs the audit trail's chains (SecretsDir/audit-key.pem).
	auditKey ed25519.PrivateKey
	dbRoles  *grants.PostgresRoles
	dbReads  *audit.DBReads
	analysts *grants.ClickHouseAnalysts
	// auditMetrics count the audited reads by door.
	auditMetrics *audit.Metrics
	releases     *open.Releaser
	open         *open.Server
	// landing says where corrections landed, and reads a change.
	landing *landing.Landing
	// lookupDB is the bus's own pool (lookups, dispute flags) on the PostgreSQL the sink writes.
	lookupDB *pgxpool.Pool
	pcfg     pipeline.Config
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	errs     chan error
	closeMu  sync.Mutex
	closers  []closer // what Close closes, in the order the parts started
}

// defaults fills in what is not set.
func (cfg *Config) defaults() {
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
}

// Validate says what is wrong with the configuration (after its defaults).
func (cfg Config) Validate() error {
	if cfg.Catalog == nil {
		return errors.New("bus: a catalog is required")
	}
	if cfg.Kafka == nil && (cfg.AdminUser == "" || cfg.AdminPassword == "") {
		return errors.New("bus: the embedded cluster needs its admin's user and password")
	}
	if cfg.IdempotencyWindow > door.MaxWindow {
		return fmt.Errorf("bus: an idempotency window of %s is longer than the %s the door keeps ids", cfg.IdempotencyWindow, door.MaxWindow)
	}
	for kind := range cfg.Sinks {
		if _, ok := sinks.Lookup(kind); !ok {
			return fmt.Errorf("bus: no sink kind %q (kinds: %s)", kind, strings.Join(sinks.Names(), ", "))
		}
	}
	return checkPrefix(cfg.Catalog, cfg.GroupPrefix)
}

// Start starts everything; Close stops it.
func Start(ctx context.Context, cfg Config) (_ *Bus, err error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, errs: make(chan error, 4), Metrics: prometheus.NewRegistry()}
	b.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	defer func() {
		if err != nil {
			_ = b.Close(context.Background())
		}
	}()
	for _, step := range []func(context.Context) error{
		b.startKafka, b.ensureTopics, b.openProposals, b.loadPrincipals, b.serveRegistry, b.registerSchemas, b.pipelineConfig,
	} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	if err := b.startDoor(ctx, rctx); err != nil {
		return nil, err
	}
	// The control plane: applications and grants. Opening it reconciles the
	// ACLs (the catalog's and the grants') and starts the grants' feeds.
	if err := b.startControl(ctx, rctx); err != nil {
		return nil, err
	}
	// The sinks are opened before the disputes, which ask them for
	// receipts, and run once everything is up.
	if err := b.openSinks(ctx); err != nil {
		return nil, err
	}
	if err := b.startDisputes(ctx, rctx); err != nil {
		return nil, err
	}
	b.tick(rctx, every(b.cfg.ControlEvery), "proposals tick (escalation)", b.cfg.Log.With("component", "proposals"), b.Proposals.Tick)
	if err := b.serveAPI(ctx, rctx); err != nil {
		return nil, err
	}
	if err := b.startSinks(ctx, rctx); err != nil {
		return nil, err
	}
	return b, nil
}

// startKafka starts the embedded cluster, unless an existing one is given.
func (b *Bus) startKafka(ctx context.Context) (err error) {
	if b.cfg.Kafka != nil {
		b.kafka = *b.cfg.Kafka
	} else {
		ecfg := embedded.Config{
			Brokers: b.cfg.Brokers, Ports: b.cfg.KafkaPorts, DataDir: b.cfg.DataDir,
			AdminUser: b.cfg.AdminUser, AdminPassword: b.cfg.AdminPassword,
			BrokerConfigs: b.cfg.KafkaBrokerConfigs,
		}
		if b.cfg.TLS != nil {
			if ecfg.TLS, err = tlsca.Server(b.cfg.TLS.Cert, b.cfg.TLS.Key); err != nil {
				return err
			}
			ecfg.CAFile = b.cfg.TLS.CA
		}
		b.cluster, err = embedded.Start(ctx, ecfg, b.cfg.Log)
		if err != nil {
			return err
		}
		b.onClose("embedded kafka", func(context.Context) error { b.cluster.Close(); return nil }) // flushes its log to disk
		b.kafka = b.cluster.Admin()
	}
	b.kopts, err = b.kafka.Opts()
	return err
}

// ensureTopics creates Jutong's internal topics, and the items' with ApplyTopics.
func (b *Bus) ensureTopics(ctx context.Context) error {
	admin, err := kafkaconn.NewClient(b.kopts)
	if err != nil {
		return err
	}
	defer admin.Close()
	scope := b.cfg.Catalog
	if !b.cfg.ApplyTopics {
		scope = &catalog.Catalog{} // internal topics only
	}
	changes, err := topics.Ensure(ctx, kadm.NewClient(admin), scope, InternalTopics(b.cfg.Catalog)...)
	if err != nil {
		return err
	}
	for _, c := range changes {
		if c.Action == "cannot" {
			b.cfg.Log.Warn("topic differs from the catalog", "topic", c.Topic, "detail", c.Detail)
		} else {
			b.cfg.Log.Info("topic "+c.Action, "topic", c.Topic, "detail", c.Detail)
		}
	}
	return nil
}

// loadPrincipals loads (or creates) the departments' credentials and tokens,
// and sets their SCRAM users.
func (b *Bus) loadPrincipals(ctx context.Context) (err error) {
	credPath, tokPath, offPath := "", "", ""
	if d := b.cfg.SecretsDir; d != "" {
		credPath, tokPath, offPath = filepath.Join(d, "credentials.json"), filepath.Join(d, "tokens.json"), filepath.Join(d, "officers.json")
	}
	if b.Credentials, err = access.LoadOrCreate(credPath, b.cfg.Catalog); err != nil {
		return err
	}
	if b.Tokens, err = access.LoadOrCreateTokens(tokPath, b.cfg.Catalog); err != nil {
		return err
	}
	if b.Officers, err = access.LoadOrCreateTokens(offPath, b.cfg.Catalog); err != nil {
		return err
	}
	keyPath := ""
	if d := b.cfg.SecretsDir; d != "" {
		keyPath = filepath.Join(d, "feed-keys.json")
	}
	key, err := access.LoadOrCreateSecret(keyPath, "feeds")
	if err != nil {
		return err
	}
	b.feedKey = []byte(key)
	if d := b.cfg.SecretsDir; d != "" {
		b.auditKey, err = audit.LoadOrCreateKey(filepath.Join(d, audit.KeyFile))
	} else {
		_, b.auditKey, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return fmt.Errorf("the audit signing key: %w", err)
	}
	// On the embedded cluster Jutong owns the departments' users. On a real
	// cluster it sets them only when told to: instances with other secrets
	// would otherwise overwrite each other's passwords.
	if b.cluster == nil && !b.cfg.CreateUsers {
		return nil
	}
	admin, err := kafkaconn.NewClient(b.kopts)
	if err != nil {
		return err
	}
	defer admin.Close()
	return access.EnsureUsers(ctx, kadm.NewClient(admin), b.cfg.Catalog, b.Credentials)
}

// serveRegistry opens the Kafka-backed registry and serves its REST API,
// unless an external registry is given.
func (b *Bus) serveRegistry(ctx context.Context) (err error) {
	log := b.cfg.Log
	if b.cfg.RegistryURL != "" {
		b.regURL = b.cfg.RegistryURL
		log.Info("using an external schema registry", "url", b.regURL)
		return nil
	}
	admin, err := kafkaconn.NewClient(b.kopts)
	if err != nil {
		return err
	}
	defer admin.Close() // the store tails with a client of its own
	if b.Registry, err = registry.Open(ctx, admin, registry.DefaultTopic, log.With("component", "registry")); err != nil {
		return err
	}
	b.onClose("schema registry", func(context.Context) error { b.Registry.Close(); return nil })
	// The bus's admin writes; a department's principal, with its Kafka
	// password, reads.
	acc := registry.Access{Admin: b.kafka.User, AdminPassword: b.kafka.Password, Reader: func(user string) (string, bool) {
		p, ok := b.Credentials[user]
		return p, ok
	}}
	h, err := httpmetrics.Wrap(registry.Handler(b.Registry, acc, log), b.Metrics, "registry")
	if err != nil {
		return err
	}
	url, err := b.serve(b.cfg.RegistryAddr, h, "schema registry")
	b.regURL = url
	return err
}

// registerSchemas registers the items' schemas with ApplyTopics, as
// `jutong catalog apply` does: the departments' clients only look them up.
func (b *Bus) registerSchemas(ctx context.Context) error {
	if !b.cfg.ApplyTopics {
		return nil
	}
	rc, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		return err
	}
	want, err := apply.Registrations(b.cfg.Catalog)
	if err != nil {
		return err
	}
	for _, r := range want {
		if _, err := rc.RegisterSchema(ctx, r.Subject, sr.Schema{Schema: r.Schema, Type: sr.TypeAvro}, -1, -1); err != nil {
			return fmt.Errorf("register %s: %w", r.Subject, err)
		}
	}
	return nil
}

// serve serves h on addr until Close, and returns its base URL.
func (b *Bus) serve(addr string, h http.Handler, what string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s: listen on %s: %w", what, addr, err)
	}
	// Bounded everywhere: a slow client cannot hold a connection open
	// (the gateway's bodies are also bounded in size).
	read := b.cfg.HTTPReadTimeout
	if read <= 0 {
		read = 2 * time.Minute
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: min(10*time.Second, read), ReadTimeout: read,
		WriteTimeout: read + time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	scheme := "http"
	if t := b.cfg.TLS; t != nil && t.Cert != "" {
		tc, err := tlsca.Server(t.Cert, t.Key)
		if err != nil {
			ln.Close()
			return "", err
		}
		ln, scheme = tls.NewListener(ln, tc), "https"
	}
	b.onClose(what, srv.Shutdown) // requests in flight finish, within Close's deadline
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.cfg.Log.Error(what+" stopped", "err", err)
		}
	}()
	// The bus's own clients reach a wildcard listener on loopback (which
	// its certificate names).
	host := ln.Addr().String()
	if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		host = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	}
	url := scheme + "://" + host
	b.cfg.Log.Info(what+" listening", "url", url)
	return url, nil
}

// pipelineConfig is what every runner of the bus shares: one schema cache
// for every pipeline.
func (b *Bus) pipelineConfig(context.Context) error {
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		return err
	}
	b.pcfg = b.cfg.Pipeline
	b.pcfg.Kafka, b.pcfg.Registry, b.pcfg.Catalog = b.kopts, b.RegistryOpts(), b.cfg.Catalog
	if b.pcfg.GroupPrefix == "" {
		b.pcfg.GroupPrefix = b.prefix() + "sink."
	}
	b.pcfg.Log = b.cfg.Log.With("component", "pipeline")
	b.pcfg.Metrics = b.Metrics
	b.pcfg.Decoder = schemas.NewDecoder(reg)
	if b.pcfg.DecodeCache == nil && b.cfg.DecodeCache > 0 {
		b.pcfg.DecodeCache = pipeline.NewDecodeCache(b.cfg.DecodeCache)
	}
	return nil
}

// StageLabel is the profiler label (runtime/pprof) of the goroutines of
// each stage of the bus: door, sink.<name>, copy.<topic>. A CPU profile of
// the bus (/debug/pprof or bench --cpuprofile) then says what each stage
// costs; bench prints it.
const StageLabel = "jutong.stage"

// startDoor opens the door (its id index) and runs it on the inboxes.
func (b *Bus) startDoor(ctx, rctx context.Context) (err error) {
	dcfg := b.DoorConfig()
	dcfg.InstanceID = b.cfg.Pipeline.InstanceID
	b.door, err = door.New(ctx, dcfg)
	if err != nil {
		return err
	}
	b.onClose("door", func(context.Context) error { b.door.Close(); return nil })
	if b.cfg.NoDoor {
		return nil
	}
	b.wg.Go(func() {
		pprof.Do(rctx, pprof.Labels(StageLabel, "door"), func(rctx context.Context) {
			if err := b.door.Run(rctx); err != nil {
				b.cfg.Log.Error("door stopped", "err", err)
				b.errs <- fmt.Errorf("door: %w", err)
			}
		})
	})
	return nil
}

// serveAPI serves the ingest gateway, the control API, the lookups and
// /metrics on APIAddr.
func (b *Bus) serveAPI(ctx, rctx context.Context) (err error) {
	b.gw, err = gateway.New(gateway.Config{
		Catalog: b.cfg.Catalog, Tokens: b.Tokens, Door: b.door,
		Log: b.cfg.Log.With("component", "gateway"), Registerer: b.Metrics,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(b.Metrics, promhttp.HandlerOpts{Registry: b.Metrics}))
	// An application (its decisions) and a dispute (its receipts) come
	// signed on request (Accept: application/jose): package signed.
	ctl, err := httpmetrics.Wrap(signed.Handler(b.auditKey, control.Handler(b.Control, b.Officers, b.cfg.Log.With("component", "control"))), b.Metrics, "control")
	if err != nil {
		return err
	}
	for _, route := range []string{"/v1/applications", "/v1/applications/", "/v1/grants", "/v1/responsibilities"} {
		mux.Handle(route, ctl)
	}
	if err := b.serveLookups(ctx, mux); err != nil {
		return err
	}
	if err := b.serveOpen(ctx, rctx, mux); err != nil {
		return err
	}
	if err := b.servePortal(mux); err != nil {
		return err
	}
	if err := b.serveDisputes(mux); err != nil {
		return err
	}
	if err := b.serveProposals(mux); err != nil {
		return err
	}
	mux.Handle("/", b.gw.Handler())
	b.apiURL, err = b.serve(b.cfg.APIAddr, mux, "api (gateway, control, /metrics)")

	return err
}

// openSinks opens a sink of each kind given a database (package sinks:
// PostgreSQL, ClickHouse).
func (b *Bus) openSinks(ctx context.Context) error {
	for _, k := range sinks.Kinds() {
		dsn := b.cfg.sinkDSN(k.Name)
		if dsn == "" {
			continue
		}
		s, err := k.New(ctx, sinks.Options{Name: k.Name, DSN: dsn, Catalog: b.cfg.Catalog, NoTypedViews: b.cfg.NoTypedViews,
			Log: b.cfg.Log.With("sink", k.Name)})
		if err != nil {
			return err
		}
		b.sinks = append(b.sinks, s)
		b.onClose("sink "+s.Name(), func(context.Context) error { return s.Close() })
	}
	return nil
}

// startSinks starts a pipeline per sink, and the ClickHouse copies of the
// audit trail, the quarantine and the disputes.
func (b *Bus) startSinks(ctx, rctx context.Context) error {
	if b.cfg.ClickHouseDSN != "" {
		b.startCopies(rctx)
	}
	for _, s := range b.sinks {
		scfg := b.pcfg
		scfg.ClientMetrics = true
		r, err := pipeline.New(scfg, s)
		if err != nil {
			return err
		}
		b.wg.Go(func() {
			pprof.Do(rctx, pprof.Labels(StageLabel, "sink."+s.Name()), func(rctx context.Context) {
				if err := r.Run(rctx); err != nil {
					b.cfg.Log.Error("pipeline stopped", "sink", s.Name(), "err", err)
					b.errs <- fmt.Errorf("pipeline %s: %w", s.Name(), err)
				}
			})
		})
	}
	return nil
}

// startCopies copies the audit trail, the quarantine and the disputes into
// ClickHouse, exactly once.
func (b *Bus) startCopies(rctx context.Context) {
	log := b.cfg.Log.With("component", "copy")
	for _, t := range []chsink.Table{
		{Topic: audit.Topic, DDL: audit.TableDDL, Insert: audit.InsertSQL, Row: audit.Row, Added: audit.AddedColumns(),
			Views: []string{chsink.CatalogDDL, audit.OpenReleasesView}},
		chsink.RejectsTable(),
		{Topic: dispute.Topic, DDL: chsink.DisputesDDL, Insert: chsink.DisputesInsert, Row: dispute.Row},
	} {
		b.wg.Go(func() {
			pprof.Do(rctx, pprof.Labels(StageLabel, "copy."+t.Topic), func(rctx context.Context) {
				// Through a pipeline runner, as every sink: its ledger, retries,
				// metrics (sink copy.<table>) and failure, which stops the bus.
				if err := chsink.Copy(rctx, b.pcfg, b.cfg.ClickHouseDSN, t, log); err != nil && rctx.Err() == nil {
					log.Error("copy to ClickHouse stopped", "topic", t.Topic, "err", err)
					b.errs <- fmt.Errorf("copy of %s: %w", t.Topic, err)
				}
			})
		})
	}
}

// APIURL is the base URL of the gateway and /metrics.
func (b *Bus) APIURL() string { return b.apiURL }

// InternalTopics are the topics Jutong itself needs besides the items' (the
// registry creates its own): its state and audit topics, and each
// department's inbox, checkpoints and rejects.
func InternalTopics(cat *catalog.Catalog) []topics.Spec {
	keep := map[string]string{"retention.ms": "-1", "cleanup.policy": "delete"}
	compact := map[string]string{"cleanup.policy": "compact"}
	out := []topics.Spec{
		{Name: pipeline.DeadLetterTopic, Partitions: 3, Configs: keep},
		{Name: topicname.Quarantine, Partitions: 3, Configs: keep},
		{Name: control.Topic, Partitions: 1, Configs: compact},
		{Name: dispute.Topic, Partitions: 1, Configs: compact},
		{Name: proposals.Topic, Partitions: 1, Configs: compact},
		{Name: feed.LedgerTopic, Partitions: 1, Configs: compact},
		{Name: audit.Topic, Partitions: 1, Configs: keep},
		{Name: audit.PositionsTopic, Partitions: 1, Configs: compact},
		// The door's accepted ids: compacted, and gone after twice the
		// default window (a longer window needs a longer retention).
		{Name: topicname.DoorIDs, Partitions: 3, Configs: map[string]string{"cleanup.policy": "compact,delete", "retention.ms": strconv.FormatInt(door.MaxWindow.Milliseconds(), 10)}},
	}
	for _, d := range cat.Departments {
		out = append(out,
			// A week of inbox: the door forwards within seconds; what it
			// refused is in the quarantine for good.
			topics.Spec{Name: topicname.Inbox(d.Code), Partitions: 6, Configs: map[string]string{"retention.ms": "604800000", "cleanup.policy": "delete"}},
			topics.Spec{Name: topicname.Checkpoints(d.Code), Partitions: 1, Configs: compact},
			topics.Spec{Name: topicname.Rejects(d.Code), Partitions: 1, Configs: keep},
		)
	}
	return out
}

// RegistryURL is the schema registry's base URL.
func (b *Bus) RegistryURL() string { return b.regURL }

// RegistryOpts reach the schema registry as the bus's admin (its Kafka
// user and password, for Jutong's registry and an external one alike).
func (b *Bus) RegistryOpts() []sr.ClientOpt {
	opts := b.kafka.RegistryOpts(b.regURL)
	if tc := b.ClientTLS(); tc != nil {
		opts = append(opts, sr.DialTLSConfig(tc))
	}
	return opts
}

// ClientTLS is the TLS configuration that trusts the bus's CA (nil
// without TLS).
func (b *Bus) ClientTLS() *tls.Config {
	if b.cfg.TLS == nil || b.cfg.TLS.CA == "" {
		return nil
	}
	tc, err := tlsca.Client(b.cfg.TLS.CA)
	if err != nil {
		return nil // Start loaded it already
	}
	return tc
}

// Conn is how a department's publisher or subscriber reaches this bus:
// brokers, its SCRAM user, the registry and TLS.
func (b *Bus) Conn(dept string) connect.Config {
	principal := b.cfg.Catalog.Department(dept).Principal
	return connect.Config{Brokers: b.kafka.Brokers, User: principal, Password: b.Credentials[principal], Registry: b.regURL, TLS: b.ClientTLS()}
}

// HTTPClient is an HTTP client for the bus's registry and API (trusting
// its CA with TLS).
func (b *Bus) HTTPClient() *http.Client {
	tc := b.ClientTLS()
	if tc == nil {
		return http.DefaultClient
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	return &http.Client{Transport: t, Timeout: 5 * time.Minute}
}

// Kafka returns the connection settings Jutong's components use.
func (b *Bus) Kafka() kafkaconn.Config { return b.kafka }

// PostgresDSN and ClickHouseDSN are the databases the sinks write ("" when
// that sink is off), for callers that read them with their own connections.
func (b *Bus) PostgresDSN() string   { return b.cfg.PostgresDSN }
func (b *Bus) ClickHouseDSN() string { return b.cfg.ClickHouseDSN }

// DoorConfig is the configuration of the bus's door, for a door of one's
// own (with NoDoor).
func (b *Bus) DoorConfig() door.Config {
	cfg := door.Config{Catalog: b.cfg.Catalog, Kafka: b.kopts, Registry: b.RegistryOpts(), Decoder: b.pcfg.Decoder,
		Window: b.cfg.IdempotencyWindow, Log: b.cfg.Log.With("component", "door"), Metrics: b.Metrics, Group: b.prefix() + "door",
		OnCorrection: b.corrected, Disputes: b.openDisputes}
	// The door's decoded events are worth keeping only for sinks of this
	// process: holding them costs the garbage collector (docs/benchmarks.md).
	if b.pcfg.DecodeCache != nil && (b.cfg.PostgresDSN != "" || b.cfg.ClickHouseDSN != "") {
		cfg.Forwarded = b.pcfg.DecodeCache.Put
	}
	return cfg
}

// sinkDSN is the database of a sink kind ("" for none).
func (c Config) sinkDSN(kind string) string {
	switch {
	case c.Sinks[kind] != "":
		return c.Sinks[kind]
	case kind == pgsink.Kind:
		return c.PostgresDSN
	case kind == chsink.Kind:
		return c.ClickHouseDSN
	}
	return ""
}

// checkPrefix refuses a group prefix that is not a dotted name of its own:
// one inside a department's group namespace (<code>.) would let that
// department join the bus's groups.
func checkPrefix(cat *catalog.Catalog, p string) error {
	if p == "" {
		return nil
	}
	if !strings.HasSuffix(p, ".") || strings.ContainsAny(p, " /*") {
		return fmt.Errorf("group prefix %q: want a dotted name ending with a dot (jutong.dc2. for one)", p)
	}
	for _, d := range cat.Departments {
		if strings.HasPrefix(p, access.GroupPrefix(d.Code)) {
			return fmt.Errorf("group prefix %q is inside department %s's groups (%s*): its principal could join the bus's groups", p, d.Code, access.GroupPrefix(d.Code))
		}
	}
	return nil
}

// prefix begins the bus's groups and transactional ids.
func (b *Bus) prefix() string {
	if b.cfg.GroupPrefix == "" {
		return "jutong."
	}
	return b.cfg.GroupPrefix
}

// KafkaOpts returns the same settings as franz-go client options.
func (b *Bus) KafkaOpts() []kgo.Opt { return b.kopts }

// Errors delivers pipeline failures (a pipeline that stopped for good).
func (b *Bus) Errors() <-chan error { return b.errs }

// onClose records how to close a part that started: Close closes the parts
// in the reverse order they started (the HTTP servers, whose requests need
// everything else, first; the cluster last).
func (b *Bus) onClose(what string, fn func(context.Context) error) {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	b.closers = append(b.closers, closer{what, fn})
}

type closer struct {
	what string
	fn   func(context.Context) error
}

// Close stops the bus within ctx: the pipelines, the door, the ticks (each
// finishing or abandoning its open batch: nothing is lost, the ledgers only
// move with written data), then every part in the reverse order it started.
// A part that does not stop by ctx's deadline is left behind, named in the
// error. Close is safe to call more than once.
func (b *Bus) Close(ctx context.Context) error {
	start := time.Now()
	log := b.cfg.Log
	log.Info("stopping: finishing or abandoning the batches in flight")
	if b.cancel != nil {
		b.cancel()
	}
	var errs []error
	waited := make(chan struct{})
	go func() { b.wg.Wait(); close(waited) }()
	select {
	case <-waited:
		log.Info("stopping: pipelines, door and workers stopped", "took", time.Since(start).Round(time.Millisecond))
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("the pipelines did not stop in time: %w", ctx.Err()))
		log.Warn("stopping: the pipelines did not stop in time; closing the rest", "took", time.Since(start).Round(time.Millisecond))
	}
	b.closeMu.Lock()
	closers := b.closers
	b.closers = nil
	b.closeMu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		t0 := time.Now()
		err := closers[i].fn(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", closers[i].what, err))
		}
		if took := time.Since(t0); took > time.Second || err != nil {
			log.Warn("stopping: slow or failed", "part", closers[i].what, "took", took.Round(time.Millisecond), "err", err)
		} else {
			log.Debug("stopped", "part", closers[i].what, "took", took.Round(time.Millisecond))
		}
	}
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}
