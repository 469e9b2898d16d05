package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/pipeline/analystdb"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/dbaccess"
)

const dbDesc = `Hands out a department's PostgreSQL login: the role the bus keeps for it
(<prefix><department>), which reads its active grants' tables (schema
grant_<department>: the item projected and masked as the grant sees it) and the
base tables of the unconditional items, and writes nothing. Prints a connection
URL with the role's password (a secret: hand it to the department, not to a log).
With --clickhouse, the department's analysts' ClickHouse login instead
(<prefix>analyst_<department>, reading <db>_analyst_<department> only).
Run where the bus's secrets directory is (db-credentials.json). See
docs/security.md, Database principals.`

func runDB(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || args[0] != "login" {
		fmt.Fprintf(errOut, "Usage: jutong db login --department D [flags]\n\n%s\n", dbDesc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required: login")
	}
	fs := cmdflag.New("db login", dbDesc, errOut)
	dept := fs.EnvString("department", "JUTONG_DEPARTMENT", "", "the department (required)")
	secrets := fs.EnvString("secrets-dir", "JUTONG_SECRETS_DIR", "/var/lib/jutong", "the bus's secrets directory (jutong dev's: its --data-dir)")
	dsn := fs.EnvString("postgres-dsn", "JUTONG_PG_URL", "", "the bus's PostgreSQL database (any login: only its host, port and database are used; jutong.env names dev's)")
	ch := fs.Bool("clickhouse", false, "the analysts' ClickHouse login instead of the PostgreSQL role")
	chDSN := fs.EnvString("clickhouse-dsn", "JUTONG_CH_URL", "", "the bus's ClickHouse database, for --clickhouse (jutong.env names dev's)")
	prefix := fs.EnvString("group-prefix", "JUTONG_GROUP_PREFIX", "jutong.", "the bus's --group-prefix (the roles begin with it, '.' made '_')")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	rolePrefix := strings.ReplaceAll(*prefix, ".", "_")
	if *ch {
		if *dept == "" || *chDSN == "" {
			return errors.New("--department and --clickhouse-dsn (or JUTONG_CH_URL) are required")
		}
		u, err := url.Parse(*chDSN)
		if err != nil {
			return fmt.Errorf("--clickhouse-dsn: %w", err)
		}
		user := dbaccess.AnalystUser(rolePrefix, *dept)
		path := filepath.Join(*secrets, "db-credentials.json")
		pw, err := access.ReadSecret(path, user)
		if err != nil {
			return fmt.Errorf("%s: %w (the bus makes it when the department holds a grant)", path, err)
		}
		u.User, u.Path = url.UserPassword(user, pw), "/"+analystdb.Database(strings.TrimPrefix(u.Path, "/"), *dept)
		fmt.Fprintln(out, u.String())
		return nil
	}
	if *dept == "" || *dsn == "" {
		return errors.New("--department and --postgres-dsn (or JUTONG_PG_URL) are required")
	}
	u, err := url.Parse(*dsn)
	if err != nil {
		return fmt.Errorf("--postgres-dsn: %w", err)
	}
	role := dbaccess.Role(rolePrefix, *dept)
	path := filepath.Join(*secrets, "db-credentials.json")
	pw, err := access.ReadSecret(path, role)
	if err != nil {
		return fmt.Errorf("%s: %w (the bus makes it when it reconciles the roles)", path, err)
	}
	u.User = url.UserPassword(role, pw)
	fmt.Fprintln(out, u.String())
	return nil
}
