package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/tlsca"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/sinks"
)

const serveDesc = `Runs Jutong against an existing Kafka cluster and existing databases, as in a
real deployment (see docker-compose.yml): it creates Jutong's internal topics (item
topics are created by 'jutong catalog apply', a governed change), serves
the schema registry (state in the compacted topic _jutong.schemas) and runs the
pipelines into PostgreSQL and ClickHouse until SIGINT or SIGTERM. Run several
instances for availability: the pipelines share the work through their consumer
groups and resume from the sinks' own ledgers.

It refuses to start with weak Kafka credentials or without TLS (--tls-cert and
--tls-key for HTTPS on the registry and the API, --ca for SASL_SSL to Kafka);
--registry uses an external Confluent-compatible registry instead of serving one;
--insecure-lab starts anyway, for a lab, and logs INSECURE at every start.`

func runServe(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("serve", serveDesc, errOut)
	var conn cmdflag.Conn
	conn.Register(fs, cmdflag.ConnDefaults{UserIs: "the bus's superuser; empty for no SASL",
		Registry: ""}) // --registry: an external Confluent-compatible registry to use instead of serving one
	brokers, user, pass, regURL, ca := &conn.Brokers, &conn.User, &conn.Password, &conn.Registry, &conn.CA
	regAddr := fs.EnvString("registry-addr", "JUTONG_REGISTRY_ADDR", "127.0.0.1:8081", "where the schema registry listens (loopback unless told otherwise); HTTP basic auth: departments read, the admin writes")
	apiAddr := fs.EnvString("api-addr", "JUTONG_API_ADDR", "127.0.0.1:8080", "where the HTTP API listens: the ingest gateway, the control API and /metrics (loopback unless told otherwise)")
	secrets := fs.EnvString("secrets-dir", "JUTONG_SECRETS_DIR", "/var/lib/jutong", "holds credentials.json (departments' SCRAM passwords), tokens.json (publishing tokens) and officers.json (officers' tokens), created when missing")
	createUsers := fs.Bool("create-users", false, "create or update each department's SCRAM user from credentials.json (run once, by one instance)")
	dsns := registerSinkFlags(fs, func(k sinks.Kind) string { return "empty: no " + k.Name + " sink" })
	instance := fs.EnvString("instance-id", "JUTONG_INSTANCE_ID", "", "a stable name for this instance (static group membership): restarted under the same name, it takes its partitions back at once")
	catDir := fs.EnvString("catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	verbose := fs.Bool("v", false, "log progress (info level) to stderr")
	cert := fs.EnvString("tls-cert", "JUTONG_TLS_CERT", "", "certificate (PEM) the registry and the API serve HTTPS with")
	key := fs.EnvString("tls-key", "JUTONG_TLS_KEY", "", "its private key (PEM)")
	decodeCache := 0
	fs.EnvIntVar(&decodeCache, "decode-cache", "JUTONG_DECODE_CACHE", 0, "decoded events the masked copies and the door of the process may share, so that a record is decoded once (the PostgreSQL, ClickHouse and feed sinks decode into columns of their own; 0: none, the default; 65536 covers about two seconds at 30,000 events/s)")
	prefix := fs.EnvString("group-prefix", "JUTONG_GROUP_PREFIX", "jutong.", "begins the bus's consumer groups and transactional ids (<prefix>sink.postgres, <prefix>door): another deployment on the same cluster takes its own")
	dbRoles := fs.Bool("database-roles", true, "keep the departments' PostgreSQL roles and analysts' ClickHouse users from the grants (needs CREATEROLE and ClickHouse access management: docs/security.md)")
	typed := fs.Bool("typed-views", true, "make ClickHouse's typed views of every item (two an item: docs/analytics.md)")
	lookupRate := fs.Float64("lookup-rate", 50, "lookups a second a grant allows unless its application asks for another rate")
	lab := fs.Bool("insecure-lab", false, "start even with no SASL user, an empty password or a known default one (a lab, never production; logged at every start)")
	var window, readTimeout, shutdown time.Duration
	analystGrade, authorityAnalysts := 2, false
	fs.EnvBoolVar(&authorityAnalysts, "authority-analysts", "JUTONG_AUTHORITY_ANALYSTS", false, stack.AuthorityAnalystsUsage)
	fs.EnvIntVar(&analystGrade, "authority-analyst-grade", "JUTONG_AUTHORITY_ANALYST_GRADE", 2, stack.AuthorityAnalystGradeUsage)
	fs.EnvDurationVar(&shutdown, "shutdown-timeout", "JUTONG_SHUTDOWN_TIMEOUT", stack.DefaultShutdownTimeout, stack.ShutdownTimeoutUsage)
	fs.EnvDurationVar(&readTimeout, "http-read-timeout", "JUTONG_HTTP_READ_TIMEOUT", 2*time.Minute, "the most time a client may take to send a request, body included (registry and API)")
	fs.EnvDurationVar(&window, "idempotency-window", "JUTONG_IDEMPOTENCY_WINDOW", 24*time.Hour, "how long the door answers a repeated event id 'duplicate' (at most 48h)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *brokers == "" {
		return fmt.Errorf("--brokers (or JUTONG_KAFKA_BROKERS) is required; see 'jutong serve --help'")
	}
	cat, err := stack.LoadCatalog(*catDir)
	if err != nil {
		return err
	}
	log := cmdflag.Logger(errOut, *verbose)
	if weak := weakCredentials(*user, *pass); weak != "" {
		if !*lab {
			return fmt.Errorf("refusing to start: %s (set JUTONG_KAFKA_USER and a password of your own in JUTONG_KAFKA_PASSWORD; --insecure-lab starts all the same, for a lab)", weak)
		}
		log.Warn("INSECURE: starting with weak Kafka credentials because of --insecure-lab", "why", weak)
	}
	if (*cert == "") != (*key == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if *cert == "" || *ca == "" {
		if !*lab {
			return errors.New("refusing to start without TLS: give --tls-cert/--tls-key (HTTPS for the registry and the API) and --ca (SASL_SSL to Kafka); --insecure-lab starts in plaintext, for a lab")
		}
		log.Warn("INSECURE: starting without TLS because of --insecure-lab: passwords and tokens cross the network in clear", "https", *cert != "", "kafka_tls", *ca != "")
	}
	var certs *tlsca.Files
	if *cert != "" || *ca != "" {
		certs = &tlsca.Files{Cert: *cert, Key: *key, CA: *ca}
	}
	pg, ch, others := dsns.split()
	b, err := bus.Start(ctx, bus.Config{
		Catalog:      cat,
		Kafka:        &kafkaconn.Config{Brokers: kafkaconn.ParseBrokers(*brokers), User: *user, Password: *pass, CAFile: *ca},
		TLS:          certs,
		RegistryAddr: *regAddr, RegistryURL: *regURL, APIAddr: *apiAddr, SecretsDir: *secrets, CreateUsers: *createUsers, PostgresDSN: pg, ClickHouseDSN: ch, Sinks: others, Log: log,
		Pipeline: pipeline.Config{InstanceID: *instance}, IdempotencyWindow: window, HTTPReadTimeout: readTimeout,
		NoTypedViews: !*typed, LookupRate: *lookupRate, GroupPrefix: *prefix, DecodeCache: decodeCache, AuthorityAnalysts: authorityAnalysts, AuthorityAnalystGrade: analystGrade, NoDatabaseRoles: !*dbRoles,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Jutong serving: registry %s, brokers %s\n", b.RegistryURL(), *brokers)
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-b.Errors():
	}
	return errors.Join(failed, stack.StopWithin(out, shutdown, b.Close))
}

// knownPasswords are passwords that ship in examples and development
// defaults: anyone who read them can log in.
var knownPasswords = map[string]bool{"jutong-dev": true, "change-me": true, "changeme": true, "password": true,
	"admin": true, "jutong": true, "secret": true, "bench": true, "pw": true, "test-secret": true}

// weakCredentials says why Kafka credentials are unfit for production ("" when they are fit).
func weakCredentials(user, pass string) string {
	switch {
	case user == "":
		return "no SASL user: anyone who reaches the brokers is trusted"
	case pass == "":
		return "an empty Kafka password"
	case knownPasswords[strings.ToLower(pass)]:
		return "a known default Kafka password"
	case len(pass) < 12:
		return "a Kafka password shorter than 12 characters"
	}
	return ""
}
