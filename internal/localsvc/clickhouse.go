package localsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// EnvClickHouseDSN names the environment variable holding an existing
// ClickHouse server's native-protocol DSN (clickhouse://host:9000/db).
const EnvClickHouseDSN = "JUTONG_CLICKHOUSE_DSN"

// ClickHouse is a ClickHouse server: an existing one named by a DSN, or a
// throwaway one this package started.
type ClickHouse struct {
	// DSN connects over the native protocol to the server's default database.
	DSN string
	// Throwaway is true when this package started the server.
	Throwaway bool

	dir string
	srv *server
}

// StartClickHouse returns a ClickHouse server, from the environment, the
// local binaries or an installed package, in that order.
func StartClickHouse(ctx context.Context, log *slog.Logger, opts ...Options) (*ClickHouse, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if dsn := os.Getenv(EnvClickHouseDSN); dsn != "" {
		return &ClickHouse{DSN: dsn}, nil
	}
	bin := clickhouseBinary()
	if bin == "" {
		if err := aptInstall(ctx, log, "clickhouse-server", "clickhouse-client"); err != nil {
			return nil, fmt.Errorf("clickhouse: no %s, no local clickhouse-server: %w", EnvClickHouseDSN, err)
		}
		if bin = clickhouseBinary(); bin == "" {
			return nil, fmt.Errorf("%w: clickhouse-server installed but not found", ErrUnavailable)
		}
	}
	return startLocalClickHouse(ctx, log, bin, o)
}

func clickhouseBinary() string {
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p
	}
	return firstExisting("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server")
}

const chConfig = `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{{dir}}/log/server.log</log><errorlog>{{dir}}/log/error.log</errorlog><size>10M</size><count>1</count></logger>
  <tcp_port>{{tcp}}</tcp_port>
  <http_port>{{http}}</http_port>
  <listen_host>127.0.0.1</listen_host>
  <max_connections>256</max_connections>
  <max_concurrent_queries>100</max_concurrent_queries>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <path>{{dir}}/data/</path>
  <tmp_path>{{dir}}/tmp/</tmp_path>
  <user_files_path>{{dir}}/user_files/</user_files_path>
  <format_schema_path>{{dir}}/format_schemas/</format_schema_path>
  <users_config>{{dir}}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <umask>077</umask>
  <!-- On SIGTERM, wait at most a second for clients' open connections
       (an analyst's clickhouse-client): dev stops within its bound. -->
  <shutdown_wait_unfinished>1</shutdown_wait_unfinished>
  <!-- The analysts' queries (log_queries in their profile), which the bus
       copies into its audit trail. -->
  <query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>
</yandex>
`

const chUsers = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage><poll_interval>1</poll_interval></default></profiles>
  <users><default><password_sha256_hex>{{sha}}</password_sha256_hex><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`

func startLocalClickHouse(ctx context.Context, log *slog.Logger, bin string, o Options) (*ClickHouse, error) {
	dir, throwaway := o.Dir, o.Dir == ""
	var err error
	if throwaway {
		dir, err = os.MkdirTemp("", "jutong-ch-")
	} else {
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*ClickHouse, error) {
		if throwaway {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	for _, sub := range []string{"log", "data", "tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fail(err)
		}
	}
	tcp := o.Port
	if tcp == 0 {
		if tcp, err = freePort(); err != nil {
			return fail(err)
		}
	}
	http, err := freePort()
	if err != nil {
		return fail(err)
	}
	cfg := strings.NewReplacer("{{dir}}", dir, "{{tcp}}", fmt.Sprint(tcp), "{{http}}", fmt.Sprint(http)).Replace(chConfig)
	cfgPath := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return fail(err)
	}
	// The default user needs a password (its SHA-256 in users.xml); a
	// server on a directory of its own keeps it there (0600).
	pw, err := password(dir, throwaway)
	if err != nil {
		return fail(err)
	}
	sum := sha256.Sum256([]byte(pw))
	users := strings.ReplaceAll(chUsers, "{{sha}}", hex.EncodeToString(sum[:]))
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(users), 0o600); err != nil {
		return fail(err)
	}
	// An earlier run killed before it stopped its server left it running.
	pidFile := filepath.Join(dir, "clickhouse.pid")
	if err := stopLeftover(log, pidFile, cfgPath, syscall.SIGTERM); err != nil {
		return fail(err)
	}
	cmd := exec.Command(bin, "--config-file="+cfgPath)
	cmd.Dir = dir
	c := &ClickHouse{dir: dir, Throwaway: throwaway}
	logPath := filepath.Join(dir, "log", "stdout.log")
	if c.srv, err = startServer(cmd, logPath); err != nil {
		return fail(fmt.Errorf("start clickhouse-server: %w", err))
	}
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", c.srv.pid())), 0o600); err != nil {
		c.Stop()
		return fail(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", tcp)
	if err := c.srv.waitPort(ctx, addr, 90*time.Second); err != nil {
		c.Stop()
		return nil, fmt.Errorf("clickhouse: %v (logs in %s): %s%s", err, filepath.Join(dir, "log"),
			tail(filepath.Join(dir, "log", "error.log"), 2000), tail(logPath, 1000))
	}
	c.DSN = (&url.URL{Scheme: "clickhouse", User: url.UserPassword("default", pw), Host: addr, Path: "/default"}).String()
	log.Info("started local ClickHouse", "dsn", Redact(c.DSN), "dir", dir, "throwaway", throwaway)
	return c, nil
}

// Stop stops a server this package started (removing a throwaway one's
// directory); for a server from the environment it does nothing.
func (c *ClickHouse) Stop() error { return c.StopContext(context.Background()) }

// StopContext is Stop, killing the server at ctx's deadline if it has not
// stopped by then (ClickHouse waits for its clients' queries first).
func (c *ClickHouse) StopContext(ctx context.Context) error {
	if c == nil || c.srv == nil {
		return nil
	}
	err := c.srv.stop(ctx, syscall.SIGTERM, c.grace())
	c.srv = nil
	if !c.Throwaway {
		return errors.Join(err, os.Remove(filepath.Join(c.dir, "clickhouse.pid")))
	}
	return errors.Join(err, os.RemoveAll(c.dir))
}

// grace is how long Stop waits before killing: a throwaway server's data is
// deleted anyway, so it does not wait for merges.
func (c *ClickHouse) grace() time.Duration {
	if c.Throwaway {
		return 3 * time.Second
	}
	return 30 * time.Second
}

// Port returns the native-protocol port of the server.
func (c *ClickHouse) Port() string {
	u, err := url.Parse(c.DSN)
	if err != nil {
		return ""
	}
	return u.Port()
}

// DatabaseDSN returns the DSN of database name on the same server.
func (c *ClickHouse) DatabaseDSN(name string) string {
	u, err := url.Parse(c.DSN)
	if err != nil {
		return c.DSN
	}
	u.Path = "/" + name
	return u.String()
}

// exec runs one statement on the server's default database.
func (c *ClickHouse) exec(ctx context.Context, stmt string) error {
	opts, err := clickhouse.ParseDSN(c.DSN)
	if err != nil {
		return err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Exec(ctx, stmt)
}

// CreateDatabase creates database name and returns its DSN.
func (c *ClickHouse) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := c.exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+name+"`"); err != nil {
		return "", fmt.Errorf("create clickhouse database %s: %w", name, err)
	}
	return c.DatabaseDSN(name), nil
}

// ClickHouseDatabase is the database a DSN names ("" when it names none).
func ClickHouseDatabase(dsn string) string {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return ""
	}
	return opts.Auth.Database
}

// ClickHouseMaintenanceDSN is dsn naming the server's default database, from
// which databases are created and dropped.
func ClickHouseMaintenanceDSN(dsn string) string {
	return (&ClickHouse{DSN: dsn}).DatabaseDSN("default")
}

// DropDatabase drops database name.
func (c *ClickHouse) DropDatabase(ctx context.Context, name string) error {
	return c.exec(ctx, "DROP DATABASE IF EXISTS `"+name+"`")
}

// UsersDir is where a server this package started merges more users from
// (users.d beside its users.xml: ClickHouse reloads them within seconds);
// "" for a server given by DSN.
func (c *ClickHouse) UsersDir() string {
	if c == nil || c.dir == "" {
		return ""
	}
	return filepath.Join(c.dir, "users.d")
}
