package producers

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jutong/jutong/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// Opt configures a Publisher.
type Opt func(*cfg)

type cfg struct {
	conn       connect.Config
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
	if err := c.conn.Validate(); err != nil {
		return fmt.Errorf("producers: %w", err)
	}
	if c.closeFlush <= 0 {
		return errors.New("producers: CloseTimeout must be positive")
	}
	return nil
}

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

// CloseTimeout bounds how long Close waits for the events still buffered to
// be acknowledged (default 30s); those that are not by then fail, and their
// callers get the error.
func CloseTimeout(d time.Duration) Opt { return func(c *cfg) { c.closeFlush = d } }
