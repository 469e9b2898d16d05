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
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvPostgresDSN names the environment variable holding an existing
// PostgreSQL server's DSN (a role allowed to CREATE DATABASE).
const EnvPostgresDSN = "JUTONG_POSTGRES_DSN"

// Postgres is a PostgreSQL server: an existing one named by a DSN, or a
// throwaway one this package started.
type Postgres struct {
	// DSN connects to the server's maintenance database.
	DSN string
	// Throwaway is true when this package started the server (and Stop
	// removes it).
	Throwaway bool

	dir string
	srv *server
	log *slog.Logger
}

// Options says where a locally started server keeps its data.
type Options struct {
	// Dir keeps the server's files; it is reused on the next start and
	// kept on Stop. Empty means a temporary directory removed on Stop.
	Dir string
	// Port is the TCP port; 0 picks a free one.
	Port int
}

// StartPostgres returns a PostgreSQL server, from the environment, the
// local binaries or an installed package, in that order (see the package doc).
func StartPostgres(ctx context.Context, log *slog.Logger, opts ...Options) (*Postgres, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if dsn := os.Getenv(EnvPostgresDSN); dsn != "" {
		return &Postgres{DSN: dsn, log: log}, nil
	}
	bin := postgresBinDir()
	if bin == "" {
		if err := aptInstall(ctx, log, "postgresql"); err != nil {
			return nil, fmt.Errorf("postgresql: no %s, no local binaries (/usr/lib/postgresql/*/bin): %w", EnvPostgresDSN, err)
		}
		if bin = postgresBinDir(); bin == "" {
			return nil, fmt.Errorf("%w: postgresql installed but no binaries under /usr/lib/postgresql", ErrUnavailable)
		}
	}
	return startLocalPostgres(ctx, log, bin, o)
}

// postgresBinDir finds the newest installed PostgreSQL server binaries.
func postgresBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if firstExisting(filepath.Join(d, "initdb")) != "" && firstExisting(filepath.Join(d, "postgres")) != "" {
			return d
		}
	}
	return ""
}

// OutsideRoot is where a local PostgreSQL keeps its files when its user
// cannot reach the directory it was given (a checkout under /root, say,
// when running as root: PostgreSQL runs as user postgres and must enter
// every directory above its data). Each such directory gets its own
// subdirectory, named after its path, and a LOCATION file saying where.
const OutsideRoot = "/var/lib/jutong/postgres"

// mkdirTraversable makes dir (under OutsideRoot's parent, ours) and the
// directories above it up to /var/lib traversable by every user: jutong runs
// with umask 077, under which MkdirAll would make them 0700, and the server's
// user must pass through them.
func mkdirTraversable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for d := dir; strings.HasPrefix(d, filepath.Dir(OutsideRoot)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// pgHome returns the directory the server keeps its data and socket in for
// o, and whether it is a throwaway one.
func pgHome(log *slog.Logger, o Options, cred *syscall.Credential) (dir string, throwaway bool, err error) {
	if o.Dir == "" {
		for _, base := range []string{os.TempDir(), "/tmp", "/var/tmp"} {
			if reachable(base, cred) {
				dir, err = os.MkdirTemp(base, "jutong-pg-")
				return dir, true, err
			}
		}
		if err := mkdirTraversable(filepath.Join(OutsideRoot, "tmp")); err != nil {
			return "", true, err
		}
		dir, err = os.MkdirTemp(filepath.Join(OutsideRoot, "tmp"), "jutong-pg-")
		return dir, true, err
	}
	if dir, err = filepath.Abs(o.Dir); err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, err
	}
	// dir itself is given to the server's user below; what matters is
	// whether that user can reach it.
	if reachable(filepath.Dir(dir), cred) {
		return dir, false, nil
	}
	sum := sha256.Sum256([]byte(dir))
	home := filepath.Join(OutsideRoot, hex.EncodeToString(sum[:8]))
	pointer := filepath.Join(dir, "LOCATION")
	if _, err := os.Stat(pointer); err != nil {
		// No pointer: whatever is there belongs to a data directory that was
		// removed since; the new one must not inherit its tables.
		if err := os.RemoveAll(home); err != nil {
			return "", false, err
		}
	}
	if err := mkdirTraversable(OutsideRoot); err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", false, err
	}
	note := fmt.Sprintf("%s\n\nPostgreSQL runs as user postgres, which cannot enter %s: its files are in the directory above.\n", home, dir)
	if err := os.WriteFile(pointer, []byte(note), 0o600); err != nil {
		return "", false, err
	}
	log.Info("PostgreSQL keeps its files outside the data directory (its user cannot enter it)", "dir", home, "data_dir", dir)
	return home, false, nil
}

func startLocalPostgres(ctx context.Context, log *slog.Logger, bin string, o Options) (*Postgres, error) {
	cred, err := credentialFor("postgres")
	if err != nil {
		return nil, err
	}
	dir, throwaway, err := pgHome(log, o, cred)
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, log: log, Throwaway: throwaway}
	fail := func(err error) (*Postgres, error) {
		if throwaway {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	if err := chownTree(dir, cred); err != nil {
		return fail(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fail(err)
	}
	data := filepath.Join(dir, "data")
	// An earlier run killed before it stopped its server left it running.
	if err := stopLeftover(log, filepath.Join(data, "postmaster.pid"), data, syscall.SIGINT); err != nil {
		return fail(err)
	}
	if firstExisting(filepath.Join(data, "PG_VERSION")) == "" {
		initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
			"--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := initdb.CombinedOutput(); err != nil {
			return fail(fmt.Errorf("initdb in %s: %v: %s", data, err, out))
		}
	}
	pw, err := password(dir, throwaway)
	if err != nil {
		return fail(err)
	}
	// Every login needs the password (SCRAM), on TCP and on the socket,
	// except while Jutong sets it: then the socket, in a directory only the
	// server's user can enter, trusts (see setPassword).
	hba := filepath.Join(dir, "pg_hba.conf")
	if err := writeHBA(hba, cred, true); err != nil {
		return fail(err)
	}
	port := o.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return fail(err)
		}
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "hba_file=" + hba, "-c", "unix_socket_permissions=0700", "-c", "password_encryption=scram-sha-256",
		"-c", "max_connections=200", "-c", "shared_buffers=256MB", "-c", "max_wal_size=2GB"}
	// The departments' reads of the database are audited from
	// pg_stat_statements (package server/audit, DBReads).
	if _, err := os.Stat(filepath.Join(filepath.Dir(bin), "lib", "pg_stat_statements.so")); err == nil {
		args = append(args, "-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=top")
	}
	if throwaway {
		// A throwaway server trades durability for speed: it holds test
		// and demo data only and is deleted on Stop.
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	logPath := filepath.Join(dir, "postgres.log")
	if p.srv, err = startServer(cmd, logPath); err != nil {
		return fail(fmt.Errorf("start postgres: %w", err))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := p.srv.waitPort(ctx, addr, 60*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("postgres: %v (log %s): %s", err, logPath, tail(logPath, 2000))
	}
	if err := setPassword(ctx, dir, port, pw, hba, cred); err != nil {
		p.Stop()
		return nil, err
	}
	p.DSN = (&url.URL{Scheme: "postgres", User: url.UserPassword("postgres", pw), Host: addr, Path: "/postgres", RawQuery: "sslmode=disable"}).String()
	log.Info("started local PostgreSQL", "dsn", Redact(p.DSN), "dir", dir, "throwaway", throwaway)
	return p, nil
}

// writeHBA writes the server's authentication rules: SCRAM everywhere, and
// with bootstrap also trust on the socket (whose directory only the
// server's user, and root, can enter).
func writeHBA(path string, cred *syscall.Credential, bootstrap bool) error {
	rules := "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
	if bootstrap {
		rules = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"
	}
	if err := os.WriteFile(path, []byte("# written by jutong (localsvc)\n"+rules), 0o600); err != nil {
		return err
	}
	if cred != nil {
		return os.Chown(path, int(cred.Uid), int(cred.Gid))
	}
	return nil
}

// setPassword sets the superuser's password over the socket, then turns
// the socket to SCRAM too and reloads: from then on every login needs it.
func setPassword(ctx context.Context, dir string, port int, pw, hba string, cred *syscall.Credential) error {
	sock := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", dir, port)
	// The port accepts before the server finishes recovery; wait for a query.
	deadline := time.Now().Add(30 * time.Second)
	var conn *pgx.Conn
	for {
		var err error
		if conn, err = pgx.Connect(ctx, sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ALTER ROLE postgres PASSWORD "+quoteLiteral(pw)); err != nil {
		return fmt.Errorf("postgres: set the password: %w", err)
	}
	if err := writeHBA(hba, cred, false); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("postgres: reload: %w", err)
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Dir is where a local server keeps its files ("" for a server from a DSN).
func (p *Postgres) Dir() string { return p.dir }

// Stop stops a server this package started (removing a throwaway one's
// directory); for a server from the environment it does nothing.
func (p *Postgres) Stop() error { return p.StopContext(context.Background()) }

// StopContext is Stop, killing the server at ctx's deadline if it has not
// stopped by then (it recovers from its WAL at the next start).
func (p *Postgres) StopContext(ctx context.Context) error {
	if p == nil || p.srv == nil {
		return nil
	}
	// SIGINT is PostgreSQL's "fast" shutdown.
	err := p.srv.stop(ctx, syscall.SIGINT, 20*time.Second)
	p.srv = nil
	if !p.Throwaway {
		return err
	}
	return errors.Join(err, os.RemoveAll(p.dir))
}

// DatabaseDSN returns the DSN of database name on the same server.
func (p *Postgres) DatabaseDSN(name string) string { return withDatabase(p.DSN, name) }

// CreateDatabase creates database name and returns its DSN.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return p.DatabaseDSN(name), nil
}

// EnsureDatabase creates database name unless it exists, and returns its DSN.
func (p *Postgres) EnsureDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return p.DatabaseDSN(name), nil
}

// PostgresDatabase is the database a DSN names ("" when it names none).
func PostgresDatabase(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			return strings.TrimPrefix(u.Path, "/")
		}
		return ""
	}
	name := ""
	for _, kv := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(kv, "dbname="); ok {
			name = strings.Trim(v, "'")
		}
	}
	return name
}

// PostgresMaintenanceDSN is dsn naming the server's maintenance database
// (postgres), from which databases are created and dropped.
func PostgresMaintenanceDSN(dsn string) string { return withDatabase(dsn, "postgres") }

// DropDatabase drops database name, closing its remaining connections.
func (p *Postgres) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// withDatabase rewrites a URL or keyword/value DSN to name another database.
func withDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			u.Path = "/" + name
			return u.String()
		}
	}
	// In keyword/value form the last occurrence of a keyword wins.
	return strings.TrimSpace(dsn) + " dbname=" + name
}

// IsUnavailable reports whether err means the service could not be had at all.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
