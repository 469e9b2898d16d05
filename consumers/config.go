package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/model/catalog"
)

// Opt configures a Subscriber.
type Opt func(*cfg)

type cfg struct {
	conn          connect.Config
	group         string
	log           *slog.Logger
	registerer    prometheus.Registerer
	onUndecodable func(context.Context, Undecodable) error
	onFlag        func(context.Context, Flag) error
	closeTimeout  time.Duration
	snapshot      *SnapshotConfig
}

func defaultCfg(department string) cfg {
	return cfg{log: slog.New(slog.DiscardHandler), group: department + ".default", closeTimeout: 10 * time.Second}
}

func (c *cfg) validate() error {
	if err := c.conn.Validate(); err != nil {
		return fmt.Errorf("consumers: %w", err)
	}
	if c.closeTimeout <= 0 {
		return errors.New("consumers: CloseTimeout must be positive")
	}
	if c.snapshot != nil && (c.snapshot.API == "" || c.snapshot.Purpose == "" || c.snapshot.Handle == nil || c.conn.User == "") {
		return errors.New("consumers: WithSnapshot needs the API, the purpose, a Handle and the connection's user and password")
	}
	if c.onUndecodable == nil {
		log := c.log
		c.onUndecodable = func(_ context.Context, u Undecodable) error {
			log.Warn("consumers: skipping a record no schema reads", "topic", u.Topic, "partition", u.Partition, "offset", u.Offset, "err", u.Err)
			return nil
		}
	}
	return nil
}

// Group sets the consumer group (default "<department>.default"); a
// department's groups share its code and a dot as prefix, so one ACL covers
// them: the prefix is added when the name lacks it.
func Group(name string) Opt { return func(c *cfg) { c.group = name } }

// Logger sets the logger.
func Logger(l *slog.Logger) Opt { return func(c *cfg) { c.log = l } }

// Metrics registers the subscriber's counters (jutong_subscriber_delivered_total,
// jutong_subscriber_undecodable_total) on reg, as producers.Metrics does.
func Metrics(reg prometheus.Registerer) Opt { return func(c *cfg) { c.registerer = reg } }

// Undecodable is a record no schema reads: bytes that are not Confluent-
// framed Avro, or a schema id the registry does not know.
type Undecodable struct {
	Item      *catalog.Item
	Topic     string
	Partition int32
	Offset    int64
	Value     []byte
	Err       error
}

// OnUndecodable sets what happens to a record no schema reads. The default
// logs it, counts it (jutong_subscriber_undecodable_total) and skips it: one
// bad record never stops a subscriber. A callback that returns an error
// stops Run with it instead (the record is delivered again next time).
func OnUndecodable(f func(ctx context.Context, u Undecodable) error) Opt {
	return func(c *cfg) { c.onUndecodable = f }
}

// Flag says that the open disputes of a record changed: one was raised, or
// the last one closed (Disputes empty). The bus keeps the flags of a topic's
// records in a topic of their own (topicname.Flags: Avro, keyed by the
// record's key, compacted), which the subscriber reads beside the topic,
// under the same grant; on a masked feed, Key is the record's pseudonym.
// Flags and changes come from two topics: a flag is not ordered with the
// record's changes, which carry their own disputes (Delivery.Disputes).
type Flag struct {
	Item      *catalog.Item
	Key       string
	Disputes  []string // open from now on
	Fields    []string // the fields the open disputes question
	At        time.Time
	Topic     string // the flags topic (or, for a legacy flag record, the item's topic)
	Partition int32
	Offset    int64
}

// OnFlag sets what happens when a record's flag changes (see Flag). The
// default counts it (jutong_subscriber_flags_total) and goes on; the changes
// themselves carry their disputes in Delivery.Disputes either way. A
// callback that returns an error stops Run with it (the flag is delivered
// again next time).
func OnFlag(f func(ctx context.Context, fl Flag) error) Opt {
	return func(c *cfg) { c.onFlag = f }
}

// CloseTimeout bounds how long Close waits to leave the group (default 10s).
func CloseTimeout(d time.Duration) Opt { return func(c *cfg) { c.closeTimeout = d } }
