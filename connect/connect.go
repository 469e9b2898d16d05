// Package connect is how a department's program reaches the bus: the
// brokers, its SCRAM-SHA-256 principal, the schema registry (logged in to
// as the same principal, as Confluent's basic.auth.credentials.source=
// SASL_INHERIT), and TLS for both. Both SDKs take a Config: one connection
// setting, one name each, for publishers (package producers) and
// subscribers (package consumers) alike.
package connect

import (
	"crypto/tls"
	"errors"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr"
)

// Config is how to reach the bus.
type Config struct {
	Brokers []string // host:port of the Kafka bootstrap brokers
	// User and Password are the department's principal (dept.<code>) and
	// its Kafka password; the registry and the bus's HTTP API take them too.
	User, Password string
	Registry       string // the schema registry's URL
	// TLS, when set, connects to Kafka with SASL_SSL and to the registry
	// and the API with HTTPS: for a bus whose certificates a private CA
	// signed, a config whose RootCAs hold that CA (jutong dev prints where
	// its ca.pem is).
	TLS *tls.Config
	// KafkaOpts are franz-go options applied after the SDK's own (linger,
	// a custom dialer, ...); RegistryOpts likewise for the registry client
	// (other credentials than the principal's, ...).
	KafkaOpts    []kgo.Opt
	RegistryOpts []sr.ClientOpt
}

// Validate says what is missing.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("connect: no brokers")
	case c.Registry == "":
		return errors.New("connect: no schema registry URL")
	case (c.User == "") != (c.Password == ""):
		return errors.New("connect: a user needs its password, and a password its user")
	}
	return nil
}

// Kafka is the client options to reach the brokers, before the caller's
// KafkaOpts (which an SDK appends after its own).
func (c Config) Kafka() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.User != "" {
		opts = append(opts, kgo.SASL(scram.Auth{User: c.User, Pass: c.Password}.AsSha256Mechanism()))
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	return opts
}

// RegistryClient is the schema registry's client, as the principal.
func (c Config) RegistryClient() (*sr.Client, error) {
	opts := []sr.ClientOpt{sr.URLs(c.Registry)}
	if c.User != "" {
		opts = append(opts, sr.BasicAuth(c.User, c.Password))
	}
	if c.TLS != nil {
		opts = append(opts, sr.DialTLSConfig(c.TLS.Clone()))
	}
	return sr.NewClient(append(opts, c.RegistryOpts...)...)
}

// HTTPClient reaches the bus's HTTP API (snapshots, lookups), trusting
// TLS's roots.
func (c Config) HTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if c.TLS != nil {
		t.TLSClientConfig = c.TLS.Clone()
	}
	return &http.Client{Transport: t, Timeout: 10 * time.Minute}
}
