package cmdflag

import (
	"strings"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// Conn is the flag group of every command that reaches a bus: one name
// and one environment variable per setting, the same in every command
// (and in the file `jutong dev` writes for the CLI, jutong.env).
//
//	--brokers         JUTONG_KAFKA_BROKERS     the Kafka brokers
//	--kafka-user      JUTONG_KAFKA_USER        the SASL/SCRAM user the command is
//	--kafka-password  JUTONG_KAFKA_PASSWORD    its password
//	--ca              JUTONG_CA_FILE           the CA to trust (SASL_SSL, HTTPS)
//	--registry        JUTONG_REGISTRY_URL      the schema registry
type Conn struct {
	Brokers, User, Password, CA, Registry string
}

// ConnDefaults are a command's defaults and what its user is.
type ConnDefaults struct {
	Brokers, User, Registry string
	UserIs                  string // "the bus's admin", "the department's principal; default: ..."
}

// Register declares the group on f.
func (c *Conn) Register(f *FlagSet, d ConnDefaults) {
	f.EnvStringVar(&c.Brokers, "brokers", "JUTONG_KAFKA_BROKERS", d.Brokers, "Kafka bootstrap brokers, comma separated")
	f.EnvStringVar(&c.User, "kafka-user", "JUTONG_KAFKA_USER", d.User, "SASL/SCRAM-SHA-256 user: "+d.UserIs)
	f.EnvStringVar(&c.Password, "kafka-password", "JUTONG_KAFKA_PASSWORD", "", "its password (jutong dev writes the admin's to --data-dir/jutong.env)")
	f.EnvStringVar(&c.CA, "ca", "JUTONG_CA_FILE", "", "CA certificate(s) to trust: Kafka over SASL_SSL, the registry and the API over HTTPS; jutong dev makes one in --data-dir/tls/ca.pem")
	f.EnvStringVar(&c.Registry, "registry", "JUTONG_REGISTRY_URL", d.Registry, "schema registry URL")
}

// Kafka is the group as a connection to the brokers.
func (c *Conn) Kafka() kafkaconn.Config {
	return kafkaconn.Config{Brokers: kafkaconn.ParseBrokers(strings.TrimSpace(c.Brokers)), User: c.User, Password: c.Password, CAFile: c.CA}
}
