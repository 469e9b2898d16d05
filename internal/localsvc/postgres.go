package localsvc

import (
	"context"
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

	dir  string
	cmd  *exec.Cmd
	done chan error
	log  *slog.Logger
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

func startLocalPostgres(ctx context.Context, log *slog.Logger, bin string, o Options) (*Postgres, error) {
	cred, err := credentialFor("postgres")
	if err != nil {
		return nil, err
	}
	dir, throwaway := o.Dir, o.Dir == ""
	if throwaway {
		dir, err = os.MkdirTemp("", "jutong-pg-")
	} else {
		dir, err = filepath.Abs(dir)
		if err == nil {
			// Parents must be traversable by the postgres user when we are root.
			err = os.MkdirAll(dir, 0o755)
		}
	}
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
	data := filepath.Join(dir, "data")
	if firstExisting(filepath.Join(data, "PG_VERSION")) == "" {
		initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
			"--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := initdb.CombinedOutput(); err != nil {
			hint := ""
			if cred != nil {
				hint = fmt.Sprintf(" (running as root, PostgreSQL runs as user postgres: every directory above %s must be traversable by it)", dir)
			}
			return fail(fmt.Errorf("initdb%s: %v: %s", hint, err, out))
		}
	}
	port := o.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return fail(err)
		}
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=200", "-c", "shared_buffers=256MB", "-c", "max_wal_size=2GB"}
	if throwaway {
		// A throwaway server trades durability for speed: it holds test
		// and demo data only and is deleted on Stop.
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return fail(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start postgres: %w", err))
	}
	p.cmd = cmd
	p.done = make(chan error, 1)
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitPort(ctx, addr, 60*time.Second, p.done); err != nil {
		out, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
		p.Stop()
		return nil, fmt.Errorf("postgres: %v: %s", err, out)
	}
	p.DSN = fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr)
	// The port accepts before the server finishes recovery; wait for a query.
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, p.DSN)
		if err == nil {
			conn.Close(ctx)
			break
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("postgres not ready: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Info("started local PostgreSQL", "dsn", p.DSN, "dir", dir, "throwaway", throwaway)
	return p, nil
}

// Stop stops a server this package started (removing a throwaway one's
// directory); for a server from the environment it does nothing.
func (p *Postgres) Stop() error {
	if p == nil || p.cmd == nil {
		return nil
	}
	// SIGINT is PostgreSQL's "fast" shutdown.
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
	if !p.Throwaway {
		return nil
	}
	return os.RemoveAll(p.dir)
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
