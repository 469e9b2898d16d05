// Package kafkaconn turns Jutong's Kafka connection settings (brokers,
// SASL/SCRAM user and password) into franz-go client options, the same way
// for every component.
package kafkaconn

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config is how to reach and authenticate to a Kafka cluster.
type Config struct {
	Brokers  []string
	User     string // SASL/SCRAM-SHA-256 user; empty means no SASL
	Password string
}

// ParseBrokers splits a comma-separated broker list.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Opts returns the client options for c.
func (c Config) Opts() ([]kgo.Opt, error) {
	if len(c.Brokers) == 0 {
		return nil, fmt.Errorf("kafka: no brokers configured")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.User != "" {
		opts = append(opts, kgo.SASL(scram.Auth{User: c.User, Pass: c.Password}.AsSha256Mechanism()))
	}
	return opts, nil
}

// Client creates a client for c with extra options.
func (c Config) Client(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.Opts()
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}
