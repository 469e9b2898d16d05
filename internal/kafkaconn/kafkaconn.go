// Package kafkaconn turns Jutong's Kafka connection settings (brokers,
// SASL/SCRAM user and password) into franz-go client options, the same way
// for every component. The components themselves take those options
// ([]kgo.Opt), so that code outside Jutong can call them with its own.
package kafkaconn

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/tlsca"
)

// Config is how to reach and authenticate to a Kafka cluster.
type Config struct {
	Brokers  []string
	User     string // SASL/SCRAM-SHA-256 user; empty means no SASL
	Password string
	// CAFile, when set, turns TLS on (SASL_SSL) for Kafka and the schema
	// registry, trusting the CA certificate(s) in it.
	CAFile string
}

// TLS is the client TLS configuration (nil without CAFile).
func (c Config) TLS() (*tls.Config, error) {
	if c.CAFile == "" {
		return nil, nil
	}
	return tlsca.Client(c.CAFile)
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
	tc, err := c.TLS()
	if err != nil {
		return nil, err
	}
	return connect.Config{Brokers: c.Brokers, User: c.User, Password: c.Password, TLS: tc}.Kafka(), nil
}

// NewClient creates a client from a component's connection options (seed
// brokers, SASL, TLS: what the component was given) and the options of its
// own use. opts is not modified.
func NewClient(opts []kgo.Opt, extra ...kgo.Opt) (*kgo.Client, error) {
	if len(opts) == 0 {
		return nil, fmt.Errorf("kafka: no connection options (seed brokers) given")
	}
	return kgo.NewClient(append(slices.Clone(opts), extra...)...)
}

// RegistryOpts reach the schema registry at url as the same principal
// (HTTP basic auth with the SASL user and password, as Confluent's
// basic.auth.credentials.source=SASL_INHERIT).
// With CAFile it trusts the same CA (a CA file that cannot be read fails
// the client's first request, and Opts, with the reason).
func (c Config) RegistryOpts(url string) []sr.ClientOpt {
	opts := []sr.ClientOpt{sr.URLs(url)}
	if c.User != "" {
		opts = append(opts, sr.BasicAuth(c.User, c.Password))
	}
	if tc, err := c.TLS(); err == nil && tc != nil {
		opts = append(opts, sr.DialTLSConfig(tc))
	}
	return opts
}

// Client creates a client for c with extra options.
func (c Config) Client(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.Opts()
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}
