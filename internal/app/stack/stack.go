// Package stack starts what `jutong dev`, `jutong demo` and the benchmarks
// run: the databases (from a DSN, or local servers under the data
// directory), a database of the bus's in each, and the bus; and prints
// where everything listens.
package stack

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/localsvc"
	"github.com/jutong/jutong/internal/tlsca"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/audit"
)

// LoadCatalog reads dir, or the embedded sample when dir is empty.
func LoadCatalog(dir string) (*catalog.Catalog, error) {
	if dir == "" {
		return catalog.Sample()
	}
	return catalog.Load(os.DirFS(dir))
}

// Flags are the settings shared by dev, demo and the benchmarks.
type Flags struct {
	CatalogDir    string
	Apply         bool
	DataDir       string
	Brokers       int
	KafkaPorts    string
	RegistryAddr  string
	APIAddr       string
	AdminUser     string
	AdminPassword string
	PostgresDSN   string
	ClickHouseDSN string
	Verbose       bool
	// IdempotencyWindow is how long the door remembers accepted event ids.
	IdempotencyWindow time.Duration
	// HTTPReadTimeout bounds reading a request on the registry and the API.
	HTTPReadTimeout time.Duration
	// LookupRate is the lookups a second a grant allows unless it says.
	LookupRate float64
	// GroupPrefix begins the bus's consumer groups and transactional ids.
	GroupPrefix string
	// DecodeCache is how many decoded events the sinks share (0: none).
	DecodeCache int
	// TLS serves Kafka (SASL_SSL), the registry and the API (HTTPS) with a
	// certificate of a local CA kept in DataDir/tls.
	TLS bool
	// ShutdownTimeout bounds stopping on SIGTERM (StopWithin).
	ShutdownTimeout time.Duration
	// AuthorityAnalysts gives the data authority's analysts every item at
	// AuthorityAnalystGrade.
	AuthorityAnalysts     bool
	AuthorityAnalystGrade int
	// Kafka, when set, is an existing cluster (the benchmarks' brokers in a
	// process of their own): no embedded brokers are started, and the bus
	// sets the departments' users on it.
	Kafka *kafkaconn.Config
	// NoDatabaseRoles leaves out the departments' database logins and
	// their masked copies (bench pipeline --database-roles=false).
	NoDatabaseRoles bool
}

// Register declares the flags on fs; defDataDir is --data-dir's default.
func (s *Flags) Register(fs *cmdflag.FlagSet, defDataDir string) {
	fs.EnvStringVar(&s.CatalogDir, "catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	fs.BoolVar(&s.Apply, "apply", false, "create and update the item topics on start, as 'jutong catalog apply' does")
	fs.EnvStringVar(&s.DataDir, "data-dir", "JUTONG_DATA_DIR", defDataDir, "where the embedded Kafka log and the local databases live")
	fs.EnvIntVar(&s.Brokers, "broker-count", "JUTONG_BROKER_COUNT", 3, "number of embedded Kafka brokers")
	fs.EnvStringVar(&s.KafkaPorts, "kafka-ports", "JUTONG_KAFKA_PORTS", "9092,9093,9094", "the brokers' ports on 127.0.0.1, one per broker")
	fs.EnvStringVar(&s.RegistryAddr, "registry-addr", "JUTONG_REGISTRY_ADDR", "127.0.0.1:8081", "where the schema registry listens")
	fs.EnvStringVar(&s.APIAddr, "api-addr", "JUTONG_API_ADDR", "127.0.0.1:8080", "where the HTTP API listens: the ingest gateway and /metrics")
	fs.EnvStringVar(&s.AdminUser, "kafka-user", "JUTONG_KAFKA_USER", "jutong", "the Kafka superuser (SCRAM-SHA-256) Jutong's components use")
	fs.EnvStringVar(&s.AdminPassword, "kafka-password", "JUTONG_KAFKA_PASSWORD", "", "its password; empty: a random one kept in --data-dir/admin.json")
	fs.EnvStringVar(&s.PostgresDSN, "postgres-dsn", localsvc.EnvPostgresDSN, "", "PostgreSQL for the base databases; dev uses the database it names (created if missing); empty starts a local server under --data-dir")
	fs.EnvStringVar(&s.ClickHouseDSN, "clickhouse-dsn", localsvc.EnvClickHouseDSN, "", "ClickHouse (native protocol) for analytics; dev uses the database it names (created if missing); empty starts a local server under --data-dir")
	fs.EnvStringVar(&s.GroupPrefix, "group-prefix", "JUTONG_GROUP_PREFIX", "jutong.", "begins the bus's consumer groups and transactional ids (<prefix>sink.postgres, <prefix>door)")
	fs.EnvIntVar(&s.DecodeCache, "decode-cache", "JUTONG_DECODE_CACHE", 0, "decoded events the masked copies and the door of the process may share, so that a record is decoded once (the PostgreSQL, ClickHouse and feed sinks decode into columns of their own; 0: none, the default; 65536 covers about two seconds at 30,000 events/s)")
	fs.Float64Var(&s.LookupRate, "lookup-rate", 50, "lookups a second a grant allows unless its application asks for another rate")
	fs.BoolVar(&s.TLS, "tls", true, "serve Kafka over SASL_SSL and the registry and API over HTTPS, with certificates of a local CA made in --data-dir/tls (--tls=false: plaintext, for a lab)")
	fs.BoolVar(&s.Verbose, "v", false, "log progress (info level) to stderr")
	fs.EnvDurationVar(&s.HTTPReadTimeout, "http-read-timeout", "JUTONG_HTTP_READ_TIMEOUT", 2*time.Minute, "the most time a client may take to send a request, body included (registry and API)")
	fs.EnvDurationVar(&s.IdempotencyWindow, "idempotency-window", "JUTONG_IDEMPOTENCY_WINDOW", 24*time.Hour, "how long the door answers a repeated event id 'duplicate' (at most 48h)")
	fs.EnvBoolVar(&s.AuthorityAnalysts, "authority-analysts", "JUTONG_AUTHORITY_ANALYSTS", false, AuthorityAnalystsUsage)
	fs.EnvIntVar(&s.AuthorityAnalystGrade, "authority-analyst-grade", "JUTONG_AUTHORITY_ANALYST_GRADE", 2, AuthorityAnalystGradeUsage)
	fs.EnvDurationVar(&s.ShutdownTimeout, "shutdown-timeout", "JUTONG_SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, ShutdownTimeoutUsage)
}

// Stack is a running bus with the databases it writes to.
type Stack struct {
	DataDir string
	Catalog *catalog.Catalog
	Bus     *bus.Bus
	PG      *localsvc.Postgres
	CH      *localsvc.ClickHouse
	PGDB    string // the PostgreSQL database holding the base databases
	CHDB    string
	PGDSN   string
	CHDSN   string
	// PGPool and CHConn are the commands' own connections to the bus's
	// databases (the demo's summary, the benchmarks' checks).
	PGPool *pgxpool.Pool
	CHConn driver.Conn
	// TLS are the bus's certificates (nil without TLS).
	TLS *tlsca.Files

	admin, adminPassword string
	log                  *slog.Logger
}

// Start provides the databases (DSN or local servers), creates the
// database named db in each unless it exists, and starts the bus.
func Start(ctx context.Context, s *Flags, db string, fresh bool, log *slog.Logger) (_ *Stack, err error) {
	cat, err := LoadCatalog(s.CatalogDir)
	if err != nil {
		return nil, err
	}
	ports, err := cmdflag.ParsePorts(s.KafkaPorts)
	if err != nil {
		return nil, err
	}
	if len(ports) != s.Brokers {
		return nil, fmt.Errorf("--kafka-ports lists %d ports for %d brokers", len(ports), s.Brokers)
	}
	// Every path written out (jutong.env, the summary) is absolute: the
	// files are used from other directories.
	if s.DataDir, err = filepath.Abs(s.DataDir); err != nil {
		return nil, err
	}
	// The data directory holds partitions with personal data and every
	// secret of the bus: its owner's alone.
	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(s.DataDir, 0o700); err != nil {
		return nil, err
	}
	if s.AdminPassword == "" {
		if s.AdminPassword, err = access.LoadOrCreateSecret(filepath.Join(s.DataDir, "admin.json"), s.AdminUser); err != nil {
			return nil, err
		}
	}
	var certs *tlsca.Files
	if s.TLS {
		f, err := tlsca.Ensure(filepath.Join(s.DataDir, "tls"))
		if err != nil {
			return nil, err
		}
		certs = &f
	}
	st := &Stack{log: log, DataDir: s.DataDir, Catalog: cat, PGDB: db, CHDB: db, admin: s.AdminUser, adminPassword: s.AdminPassword, TLS: certs}
	defer func() {
		if err != nil {
			_ = st.Close(context.Background())
		}
	}()
	// dev uses the database a given DSN names (db when it names none);
	// demo, which drops its database first, always uses its own (db).
	if s.PostgresDSN != "" {
		if name := localsvc.PostgresDatabase(s.PostgresDSN); name != "" && !fresh {
			st.PGDB = name
		}
		st.PG = &localsvc.Postgres{DSN: localsvc.PostgresMaintenanceDSN(s.PostgresDSN)}
	} else if st.PG, err = localsvc.StartPostgres(ctx, log, localsvc.Options{Dir: filepath.Join(s.DataDir, "postgres")}); err != nil {
		return nil, err
	}
	if s.ClickHouseDSN != "" {
		if name := localsvc.ClickHouseDatabase(s.ClickHouseDSN); name != "" && name != "default" && !fresh {
			st.CHDB = name
		}
		st.CH = &localsvc.ClickHouse{DSN: localsvc.ClickHouseMaintenanceDSN(s.ClickHouseDSN)}
	} else if st.CH, err = localsvc.StartClickHouse(ctx, log, localsvc.Options{Dir: filepath.Join(s.DataDir, "clickhouse")}); err != nil {
		return nil, err
	}
	if fresh {
		if err := st.PG.DropDatabase(ctx, st.PGDB); err != nil {
			return nil, err
		}
		if err := st.CH.DropDatabase(ctx, st.CHDB); err != nil {
			return nil, err
		}
	}
	if st.PGDSN, err = st.PG.EnsureDatabase(ctx, st.PGDB); err != nil {
		return nil, err
	}
	if st.CHDSN, err = st.CH.CreateDatabase(ctx, st.CHDB); err != nil {
		return nil, err
	}
	if st.PGPool, err = pgxpool.New(ctx, st.PGDSN); err != nil {
		return nil, err
	}
	chOpts, err := clickhouse.ParseDSN(st.CHDSN)
	if err != nil {
		return nil, err
	}
	if st.CHConn, err = clickhouse.Open(chOpts); err != nil {
		return nil, err
	}
	st.Bus, err = bus.Start(ctx, bus.Config{
		Catalog: cat, ApplyTopics: s.Apply, DataDir: s.DataDir, Brokers: s.Brokers, KafkaPorts: ports,
		AdminUser: s.AdminUser, AdminPassword: s.AdminPassword, RegistryAddr: s.RegistryAddr, APIAddr: s.APIAddr,
		PostgresDSN: st.PGDSN, ClickHouseDSN: st.CHDSN, IdempotencyWindow: s.IdempotencyWindow, HTTPReadTimeout: s.HTTPReadTimeout, TLS: certs, LookupRate: s.LookupRate, GroupPrefix: s.GroupPrefix, DecodeCache: s.DecodeCache, Log: log,
		Kafka: s.Kafka, CreateUsers: s.Kafka != nil, ClickHouseUsersDir: st.CH.UsersDir(), AuthorityAnalysts: s.AuthorityAnalysts, AuthorityAnalystGrade: s.AuthorityAnalystGrade, NoDatabaseRoles: s.NoDatabaseRoles,
	})
	if err != nil {
		return nil, err
	}
	if err := st.writeEnv(); err != nil {
		return nil, err
	}
	return st, nil
}

// CAFile is the CA certificate clients trust ("" without TLS).
func (st *Stack) CAFile() string {
	if st.TLS == nil {
		return ""
	}
	return st.TLS.CA
}

// EnvFile is where dev and demo write the admin's settings for the CLI.
func (st *Stack) EnvFile() string { return filepath.Join(st.DataDir, "jutong.env") }

// writeEnv writes the settings the jutong CLI needs to act as the bus's
// admin (catalog apply, grants, dept rotate, sink replay) to EnvFile
// (0600): the secrets stay out of the printed summary and the logs.
func (st *Stack) writeEnv() error {
	k := st.Bus.Kafka()
	lines := []string{
		"# The bus's admin for the jutong CLI: set -a; . " + st.EnvFile() + "; set +a",
		"# Private: it holds the Kafka superuser's password.",
		"JUTONG_KAFKA_BROKERS=" + strings.Join(k.Brokers, ","),
		"JUTONG_KAFKA_USER=" + st.admin,
		"JUTONG_KAFKA_PASSWORD=" + st.adminPassword,
		"JUTONG_REGISTRY_URL=" + st.Bus.RegistryURL(),
		"JUTONG_API_URL=" + st.Bus.APIURL(),
		"JUTONG_CREDENTIALS=" + filepath.Join(st.DataDir, "credentials.json"),
		"JUTONG_OFFICERS=" + filepath.Join(st.DataDir, "officers.json"),
		"JUTONG_CA_FILE=" + st.CAFile(),
		"JUTONG_SECRETS_DIR=" + st.DataDir,
		"JUTONG_AUDIT_KEY=" + filepath.Join(st.DataDir, audit.KeyFile),
		"JUTONG_AUDIT_PUBLIC_KEY=" + filepath.Join(st.DataDir, audit.PublicKeyFile),
		"# The databases, for psql and clickhouse-client (not read by jutong).",
		"JUTONG_PG_URL=" + st.PGDSN,
		"JUTONG_CH_URL=" + st.CHDSN,
	}
	if err := os.WriteFile(st.EnvFile(), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	return st.writeClientFiles()
}

// writeClientFiles writes a pgpass file and a clickhouse-client
// configuration (0600) so that psql and clickhouse-client log in without
// a password on their command line (where other users could read it).
func (st *Stack) writeClientFiles() error {
	if u, err := url.Parse(st.PGDSN); err == nil {
		if pw, ok := u.User.Password(); ok {
			line := fmt.Sprintf("%s:%s:*:%s:%s\n", u.Hostname(), u.Port(), u.User.Username(), pw)
			if err := os.WriteFile(filepath.Join(st.DataDir, "pgpass"), []byte(line), 0o600); err != nil {
				return err
			}
		}
	}
	u, err := url.Parse(st.CHDSN)
	if err != nil {
		return nil
	}
	pw, _ := u.User.Password()
	var x strings.Builder
	_ = xml.EscapeText(&x, []byte(pw))
	cfg := fmt.Sprintf("<config><host>%s</host><port>%s</port><user>%s</user><password>%s</password></config>\n", u.Hostname(), u.Port(), u.User.Username(), x.String())
	return os.WriteFile(filepath.Join(st.DataDir, "clickhouse-client.xml"), []byte(cfg), 0o600)
}

// PSQL is a psql command line on the bus's PostgreSQL database, without the
// password (it is in the pgpass file its environment names); env is that
// environment entry.
func (st *Stack) PSQL(args ...string) (cmd []string, env string) {
	dsn := st.PGDSN
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		u.User = url.User(u.User.Username())
		dsn = u.String()
	}
	return append([]string{"psql", dsn}, args...), "PGPASSFILE=" + filepath.Join(st.DataDir, "pgpass")
}

// ClickHouseClient is a clickhouse-client command line on the bus's
// ClickHouse database (its login in a private configuration file).
func (st *Stack) ClickHouseClient(args ...string) []string {
	return append([]string{"clickhouse-client", "--config-file", filepath.Join(st.DataDir, "clickhouse-client.xml"), "--database", st.CHDB}, args...)
}

// Close stops the bus, with three quarters of the time to ctx's deadline
// (see bus.Close), then the databases' connections and the local servers
// it started, side by side, killing those still running at the deadline.
func (st *Stack) Close(ctx context.Context) error {
	start := time.Now()
	busCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		busCtx, cancel = context.WithDeadline(ctx, start.Add(time.Until(dl)*3/4))
		defer cancel()
	}
	var errs []error
	if st.Bus != nil {
		errs = append(errs, st.Bus.Close(busCtx))
	}
	if st.PGPool != nil {
		st.PGPool.Close()
	}
	if st.CHConn != nil {
		st.CHConn.Close()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for what, stop := range map[string]func(context.Context) error{"local ClickHouse": st.CH.StopContext, "local PostgreSQL": st.PG.StopContext} {
		wg.Go(func() {
			t0 := time.Now()
			err := stop(ctx)
			st.log.Info("stopped", "part", what, "took", time.Since(t0).Round(time.Millisecond), "err", err)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", what, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// AuthorityAnalystsUsage is --authority-analysts' help.
const AuthorityAnalystsUsage = "give the data authority's analysts a ClickHouse database with every item, masked at --authority-analyst-grade: a second copy of the analytics store, which costs about a fifth of the bus's throughput (docs/benchmarks.md)"

// AuthorityAnalystGradeUsage is --authority-analyst-grade's help.
const AuthorityAnalystGradeUsage = "the security grade the data authority's analysts read every item at in ClickHouse (fields graded above it masked; docs/analytics.md)"

// DefaultShutdownTimeout is --shutdown-timeout's default.
const DefaultShutdownTimeout = 20 * time.Second

// ShutdownTimeoutUsage is --shutdown-timeout's help, for every command that serves.
const ShutdownTimeoutUsage = "on SIGTERM or Ctrl-C, the most time the bus takes to finish the batches in flight and close its parts; what is not done by then is abandoned, and read again at the next start (see docs/operations.md, Stopping)"

// StopWithin runs stop with a deadline of timeout, telling out when it
// begins and how long it took. A stop that overruns its deadline by more
// than a second is abandoned: StopWithin returns, and the process exits
// with whatever is left running. Abandoning is safe: the sinks' positions
// are committed with what they wrote, the door's with what it forwarded,
// so what was in flight is read again at the next start.
func StopWithin(out io.Writer, timeout time.Duration, stop func(context.Context) error) error {
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	start := time.Now()
	fmt.Fprintf(out, "stopping (at most %s): finishing or abandoning the batches in flight...\n", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- stop(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout + time.Second):
		err = fmt.Errorf("abandoned what was still stopping after %s", timeout)
	}
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		fmt.Fprintf(out, "stopped in %s, not cleanly: %v (what was in flight is read again at the next start)\n", took, err)
		return err
	}
	fmt.Fprintf(out, "stopped in %s\n", took)
	return nil
}

// describe prints where everything listens.
func (st *Stack) Describe(w io.Writer) {
	proto := "SASL_PLAINTEXT, SCRAM-SHA-256: no TLS"
	if st.TLS != nil {
		proto = "SASL_SSL, SCRAM-SHA-256"
	}
	fmt.Fprintf(w, "  Kafka brokers      %s  (%s)\n", strings.Join(st.Bus.Kafka().Brokers, ","), proto)
	if st.TLS != nil {
		fmt.Fprintf(w, "  TLS CA             %s  (clients trust this certificate: kcat -X ssl.ca.location=..., JUTONG_CA_FILE)\n", st.TLS.CA)
	}
	fmt.Fprintf(w, "  Credentials        %s  (one SCRAM user per department)\n", filepath.Join(st.DataDir, "credentials.json"))
	fmt.Fprintf(w, "  Admin (CLI)        set -a; . %s; set +a  (the superuser's password and the paths the CLI needs)\n", st.EnvFile())
	fmt.Fprintf(w, "  Schema registry    %s\n", st.Bus.RegistryURL())
	fmt.Fprintf(w, "  HTTP gateway       %s/v1/items/{code}/events  (tokens: %s)\n", st.Bus.APIURL(), filepath.Join(st.DataDir, "tokens.json"))
	fmt.Fprintf(w, "  Control API        %s/v1/applications  (officers' tokens: %s)\n", st.Bus.APIURL(), filepath.Join(st.DataDir, "officers.json"))
	fmt.Fprintf(w, "  Lookups            %s/v1/items/{code}/records/{key}?purpose=...  (basic auth: a department's principal and password)\n", st.Bus.APIURL())
	fmt.Fprintf(w, "  Metrics            %s/metrics\n", st.Bus.APIURL())
	if u := st.Bus.PortalURL(); u != "" {
		fmt.Fprintf(w, "  Open data portal   %s  (the public's: search, datasets, downloads; CKAN API %sapi/3/action/package_list, DCAT %scatalog.jsonld)\n", u, u, u)
	}
	fmt.Fprintf(w, "  PostgreSQL         %s  (password: JUTONG_PG_URL in the admin file)\n", localsvc.Redact(st.PGDSN))
	fmt.Fprintf(w, "  ClickHouse         %s  (password: JUTONG_CH_URL in the admin file)\n", localsvc.Redact(st.CHDSN))
}
