// Package sdkconn is how both SDKs (producers, consumers) reach the bus:
// the brokers, the department's SCRAM principal, the schema registry as
// the same principal (basic.auth.credentials.source=SASL_INHERIT), TLS for
// both, and the caller's own client options. Each SDK keeps its options
// (Brokers, SASL, Registry, TLS, ...) and sets a Conn through them.
package sdkconn

import (
	"crypto/tls"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// Conn is an SDK client's connection settings.
type Conn struct {
	Brokers      []string
	User, Pass   string
	RegistryURL  string
	RegistryOpts []sr.ClientOpt // after the SASL-inherited login: TLS, other credentials
	KafkaOpts    []kgo.Opt      // after the SDK's own: TLS, linger, ...
}

// Check says what is missing, for the SDK named pkg.
func (c *Conn) Check(pkg string) error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New(pkg + ": no brokers (use Brokers)")
	case c.RegistryURL == "":
		return errors.New(pkg + ": no schema registry (use Registry)")
	}
	return nil
}

// AddTLS connects to Kafka (SASL_SSL) and to the registry (HTTPS) with t.
func (c *Conn) AddTLS(t *tls.Config) {
	c.KafkaOpts = append(c.KafkaOpts, kgo.DialTLSConfig(t.Clone()))
	c.RegistryOpts = append(c.RegistryOpts, sr.DialTLSConfig(t.Clone()))
}

// Kafka is the brokers and the SCRAM principal as client options (the
// caller's KafkaOpts not included: the SDK appends them last, after its own).
func (c *Conn) Kafka() ([]kgo.Opt, error) {
	return kafkaconn.Config{Brokers: c.Brokers, User: c.User, Password: c.Pass}.Opts()
}

// Registry is how the client reaches the registry: as its SASL principal,
// then the caller's options.
func (c *Conn) Registry() []sr.ClientOpt {
	return append(kafkaconn.Config{User: c.User, Password: c.Pass}.RegistryOpts(c.RegistryURL), c.RegistryOpts...)
}
