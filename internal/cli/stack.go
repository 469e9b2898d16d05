package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/internal/bus"
	"github.com/jutong/jutong/internal/localsvc"
)

// stackFlags are the settings shared by dev and demo.
type stackFlags struct {
	catalogDir    string
	apply         bool
	dataDir       string
	brokers       int
	kafkaPorts    string
	registryAddr  string
	apiAddr       string
	adminUser     string
	adminPassword string
	postgresDSN   string
	clickhouseDSN string
	verbose       bool
}

func (s *stackFlags) register(fs *flagSet, defDataDir string) {
	fs.envStringVar(&s.catalogDir, "catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	fs.BoolVar(&s.apply, "apply", false, "create and update the item topics on start, as 'jutong catalog apply' does")
	fs.envStringVar(&s.dataDir, "data-dir", "JUTONG_DATA_DIR", defDataDir, "where the embedded Kafka log and the local databases live")
	fs.envIntVar(&s.brokers, "brokers", "JUTONG_BROKERS", 3, "number of embedded Kafka brokers")
	fs.envStringVar(&s.kafkaPorts, "kafka-ports", "JUTONG_KAFKA_PORTS", "9092,9093,9094", "the brokers' ports on 127.0.0.1, one per broker")
	fs.envStringVar(&s.registryAddr, "registry-addr", "JUTONG_REGISTRY_ADDR", "127.0.0.1:8081", "where the schema registry listens")
	fs.envStringVar(&s.apiAddr, "api-addr", "JUTONG_API_ADDR", "127.0.0.1:8080", "where the HTTP API listens: the ingest gateway and /metrics")
	fs.envStringVar(&s.adminUser, "admin-user", "JUTONG_ADMIN_USER", "jutong", "the Kafka superuser (SCRAM-SHA-256) Jutong's components use")
	fs.envStringVar(&s.adminPassword, "admin-password", "JUTONG_ADMIN_PASSWORD", "jutong-dev", "its password")
	fs.envStringVar(&s.postgresDSN, "postgres-dsn", localsvc.EnvPostgresDSN, "", "PostgreSQL for the base databases; dev uses the database it names (created if missing); empty starts a local server under --data-dir")
	fs.envStringVar(&s.clickhouseDSN, "clickhouse-dsn", localsvc.EnvClickHouseDSN, "", "ClickHouse (native protocol) for analytics; dev uses the database it names (created if missing); empty starts a local server under --data-dir")
	fs.BoolVar(&s.verbose, "v", false, "log progress (info level) to stderr")
}

// stack is a running bus with the databases it writes to.
type stack struct {
	dataDir string
	cat     *catalog.Catalog
	bus     *bus.Bus
	pg      *localsvc.Postgres
	ch      *localsvc.ClickHouse
	pgDB    string // the PostgreSQL database holding the base databases
	chDB    string
	pgDSN   string
	chDSN   string
	// pgPool and chConn are the CLI's own connections to the bus's
	// databases (the demo's summary, the benchmarks' checks).
	pgPool *pgxpool.Pool
	chConn driver.Conn
}

// startStack provides the databases (DSN or local servers), creates the
// database named db in each unless it exists, and starts the bus.
func startStack(ctx context.Context, s *stackFlags, db string, fresh bool, log *slog.Logger) (_ *stack, err error) {
	cat, err := loadCatalog(s.catalogDir)
	if err != nil {
		return nil, err
	}
	ports, err := parsePorts(s.kafkaPorts)
	if err != nil {
		return nil, err
	}
	if len(ports) != s.brokers {
		return nil, fmt.Errorf("--kafka-ports lists %d ports for %d brokers", len(ports), s.brokers)
	}
	st := &stack{dataDir: s.dataDir, cat: cat, pgDB: db, chDB: db}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	// dev uses the database a given DSN names (db when it names none);
	// demo, which drops its database first, always uses its own (db).
	if s.postgresDSN != "" {
		if name := localsvc.PostgresDatabase(s.postgresDSN); name != "" && !fresh {
			st.pgDB = name
		}
		st.pg = &localsvc.Postgres{DSN: localsvc.PostgresMaintenanceDSN(s.postgresDSN)}
	} else if st.pg, err = localsvc.StartPostgres(ctx, log, localsvc.Options{Dir: filepath.Join(s.dataDir, "postgres")}); err != nil {
		return nil, err
	}
	if s.clickhouseDSN != "" {
		if name := localsvc.ClickHouseDatabase(s.clickhouseDSN); name != "" && name != "default" && !fresh {
			st.chDB = name
		}
		st.ch = &localsvc.ClickHouse{DSN: localsvc.ClickHouseMaintenanceDSN(s.clickhouseDSN)}
	} else if st.ch, err = localsvc.StartClickHouse(ctx, log, localsvc.Options{Dir: filepath.Join(s.dataDir, "clickhouse")}); err != nil {
		return nil, err
	}
	if fresh {
		if err := st.pg.DropDatabase(ctx, st.pgDB); err != nil {
			return nil, err
		}
		if err := st.ch.DropDatabase(ctx, st.chDB); err != nil {
			return nil, err
		}
	}
	if st.pgDSN, err = st.pg.EnsureDatabase(ctx, st.pgDB); err != nil {
		return nil, err
	}
	if st.chDSN, err = st.ch.CreateDatabase(ctx, st.chDB); err != nil {
		return nil, err
	}
	if st.pgPool, err = pgxpool.New(ctx, st.pgDSN); err != nil {
		return nil, err
	}
	chOpts, err := clickhouse.ParseDSN(st.chDSN)
	if err != nil {
		return nil, err
	}
	if st.chConn, err = clickhouse.Open(chOpts); err != nil {
		return nil, err
	}
	st.bus, err = bus.Start(ctx, bus.Config{
		Catalog: cat, ApplyTopics: s.apply, DataDir: s.dataDir, Brokers: s.brokers, KafkaPorts: ports,
		AdminUser: s.adminUser, AdminPassword: s.adminPassword, RegistryAddr: s.registryAddr, APIAddr: s.apiAddr,
		PostgresDSN: st.pgDSN, ClickHouseDSN: st.chDSN, Log: log,
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (st *stack) close() {
	if st.bus != nil {
		st.bus.Close()
	}
	if st.pgPool != nil {
		st.pgPool.Close()
	}
	if st.chConn != nil {
		st.chConn.Close()
	}
	st.ch.Stop()
	st.pg.Stop()
}

// describe prints where everything listens.
func (st *stack) describe(w io.Writer) {
	fmt.Fprintf(w, "  Kafka brokers      %s  (SASL/SCRAM-SHA-256)\n", strings.Join(st.bus.Kafka().Brokers, ","))
	fmt.Fprintf(w, "  Credentials        %s  (one SCRAM user per department)\n", filepath.Join(st.dataDir, "credentials.json"))
	fmt.Fprintf(w, "  Schema registry    %s\n", st.bus.RegistryURL())
	fmt.Fprintf(w, "  HTTP gateway       %s/v1/items/{code}/events  (tokens: %s)\n", st.bus.APIURL(), filepath.Join(st.dataDir, "tokens.json"))
	fmt.Fprintf(w, "  Metrics            %s/metrics\n", st.bus.APIURL())
	fmt.Fprintf(w, "  PostgreSQL         %s\n", st.pgDSN)
	fmt.Fprintf(w, "  ClickHouse         %s\n", st.chDSN)
}
