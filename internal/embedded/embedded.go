// Package embedded runs Jutong's one-machine Kafka cluster: franz-go's kfake
// with several brokers on fixed loopback ports, its log on disk under a data
// directory (a restart keeps every record), and SASL/SCRAM with ACLs on, so
// that the embedded bus enforces the same access rules as a real cluster.
package embedded

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// Config configures the embedded cluster.
type Config struct {
	Brokers int    // number of brokers (default 3)
	Ports   []int  // fixed ports, one per broker; empty means 9092, 9093, ... ; 0s mean any free port
	DataDir string // the log lives under DataDir/kafka; empty means memory only
	// AdminUser and AdminPassword are the SCRAM-SHA-256 superuser that
	// Jutong's own components use.
	AdminUser, AdminPassword string
	// TLS, when set, makes every listener SASL_SSL with the certificate
	// in it (there is then no plaintext listener); CAFile is the CA the
	// admin's clients trust.
	TLS    *tls.Config
	CAFile string
	// BrokerConfigs are broker settings (a real broker's server.properties,
	// those kfake knows: log.cleaner.backoff.ms, log.retention.ms, ...).
	BrokerConfigs map[string]string
}

// Cluster is a running embedded cluster.
type Cluster struct {
	c     *kfake.Cluster
	admin kafkaconn.Config
}

// Mechanism is the one SASL mechanism the embedded brokers have enabled (a
// real broker's sasl.enabled.mechanisms): every principal is a SCRAM-SHA-256
// user.
const Mechanism = "SCRAM-SHA-256"

// DefaultPorts returns n ports from 9092 upwards.
func DefaultPorts(n int) []int {
	ports := make([]int, n)
	for i := range ports {
		ports[i] = 9092 + i
	}
	return ports
}

// Start starts the cluster.
func Start(_ context.Context, cfg Config, log *slog.Logger) (*Cluster, error) {
	if cfg.Brokers <= 0 {
		cfg.Brokers = 3
	}
	if cfg.Ports == nil {
		cfg.Ports = DefaultPorts(cfg.Brokers)
	}
	if len(cfg.Ports) != cfg.Brokers {
		return nil, fmt.Errorf("embedded kafka: %d brokers need %d ports, got %v", cfg.Brokers, cfg.Brokers, cfg.Ports)
	}
	if cfg.AdminUser == "" || cfg.AdminPassword == "" {
		return nil, fmt.Errorf("embedded kafka: an admin user and password are required")
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(cfg.Brokers),
		kfake.Ports(cfg.Ports...),
		kfake.ListenFn(compatListen(cfg.TLS, []string{Mechanism})), // answers as a real broker's (librdkafka, kafkajs)
		kfake.ClusterID("jutong-embedded"),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", cfg.AdminUser, cfg.AdminPassword),
		kfake.EnableACLs(),
		kfake.DefaultNumPartitions(6),
		kfake.BrokerConfigs(cfg.BrokerConfigs),
		kfake.WithLogger(slogLogger{log.With("component", "kafka")}),
	}
	if cfg.DataDir != "" {
		dir := filepath.Join(cfg.DataDir, "kafka")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		opts = append(opts, kfake.DataDir(dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka on ports %v: %w", cfg.Ports, err)
	}
	cl := &Cluster{c: c, admin: kafkaconn.Config{Brokers: c.ListenAddrs(), User: cfg.AdminUser, Password: cfg.AdminPassword, CAFile: cfg.CAFile}}
	log.Info("embedded kafka started", "brokers", c.ListenAddrs(), "data_dir", cfg.DataDir, "tls", cfg.TLS != nil)
	return cl, nil
}

// Addrs returns the brokers' host:port addresses.
func (c *Cluster) Addrs() []string { return c.c.ListenAddrs() }

// Admin returns the connection settings of the superuser.
func (c *Cluster) Admin() kafkaconn.Config { return c.admin }

// AdminClient creates a superuser client with extra options.
func (c *Cluster) AdminClient(extra ...kgo.Opt) (*kgo.Client, error) { return c.admin.Client(extra...) }

// Close stops the brokers and flushes the log to disk.
func (c *Cluster) Close() { c.c.Close() }

// slogLogger adapts slog to kfake's logger; kfake is chatty, so its info is debug.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		s.l.Error(fmt.Sprintf(msg, args...))
	case kfake.LogLevelWarn:
		s.l.Warn(fmt.Sprintf(msg, args...))
	default:
		s.l.Debug(fmt.Sprintf(msg, args...))
	}
}
