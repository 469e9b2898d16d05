package producers

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"github.com/jutong/jutong/internal/sdkconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// Opt configures a Publisher.
type Opt func(*cfg)

type cfg struct {
	conn       sdkconn.Conn
	system     string
	adapter    string
	log        *slog.Logger
	now        func() time.Time
	registerer prometheus.Registerer
	txnID      string
	closeFlush time.Duration
}

func defaultCfg() cfg {
	return cfg{adapter: "sdk", system: "unspecified", log: slog.New(slog.DiscardHandler), now: time.Now, closeFlush: 30 * time.Second}
}

func (c *cfg) validate() error {
	if err := c.conn.Check("producers"); err != nil {
		return err
	}
	if c.closeFlush <= 0 {
		return errors.New("producers: CloseTimeout must be positive")
	}
	return nil
}

// Brokers sets the Kafka bootstrap brokers.
func Brokers(addrs ...string) Opt { return func(c *cfg) { c.conn.Brokers = addrs } }

// SASL authenticates as the department's SCRAM-SHA-256 principal.
func SASL(user, pass string) Opt { return func(c *cfg) { c.conn.User, c.conn.Pass = user, pass } }

// Registry sets the Confluent-compatible schema registry URL. The client
// authenticates to it with the SASL user and password (HTTP basic auth, as
// Confluent's basic.auth.credentials.source=SASL_INHERIT) unless
// RegistryOpts says otherwise.
func Registry(url string) Opt { return func(c *cfg) { c.conn.RegistryURL = url } }

// RegistryOpts adds schema registry client options: sr.DialTLSConfig for
// HTTPS with a private CA, sr.BasicAuth for other credentials.
func RegistryOpts(opts ...sr.ClientOpt) Opt {
	return func(c *cfg) { c.conn.RegistryOpts = append(c.conn.RegistryOpts, opts...) }
}

// TLS connects to Kafka (SASL_SSL) and to the registry (HTTPS) with c:
// for a bus whose certificates a private CA signed, a config whose RootCAs
// hold that CA (jutong dev prints where its ca.pem is).
func TLS(t *tls.Config) Opt { return func(c *cfg) { c.conn.AddTLS(t) } }

// System names the department system the events come from (recorded in each event's source).
func System(name string) Opt { return func(c *cfg) { c.system = name } }

// Adapter names the adapter publishing (sdk, http, sql, file).
func Adapter(name string) Opt { return func(c *cfg) { c.adapter = name } }

// Logger sets the logger.
func Logger(l *slog.Logger) Opt { return func(c *cfg) { c.log = l } }

// Metrics registers the publisher's counters (jutong_published_events_total,
// jutong_rejected_events_total, jutong_publish_failures_total) on reg.
func Metrics(reg prometheus.Registerer) Opt { return func(c *cfg) { c.registerer = reg } }

// Transactional makes the publisher transactional with the given id (it
// must start with the department's principal followed by a dot, which its
// ACLs allow): PublishTx then commits events and extra records atomically.
func Transactional(id string) Opt { return func(c *cfg) { c.txnID = id } }

// KafkaOpts adds franz-go client options (TLS, linger, ...).
func KafkaOpts(opts ...kgo.Opt) Opt {
	return func(c *cfg) { c.conn.KafkaOpts = append(c.conn.KafkaOpts, opts...) }
}

// CloseTimeout bounds how long Close waits for the events still buffered to
// be acknowledged (default 30s); those that are not by then fail, and their
// callers get the error.
func CloseTimeout(d time.Duration) Opt { return func(c *cfg) { c.closeFlush = d } }
