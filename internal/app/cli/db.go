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
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/dbaccess"
)

const dbDesc = `Hands out a department's PostgreSQL login: the role the bus keeps for it
(<prefix><department>), which reads its active grants' tables (schema
grant_<department>: the item projected and masked as the grant sees it) and the
base tables of the unconditional items, and writes nothing. Prints a connection
URL with the role's password (a secret: hand it to the department, not to a log).
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
	prefix := fs.EnvString("group-prefix", "JUTONG_GROUP_PREFIX", "jutong.", "the bus's --group-prefix (the roles begin with it, '.' made '_')")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dept == "" || *dsn == "" {
		return errors.New("--department and --postgres-dsn (or JUTONG_PG_URL) are required")
	}
	u, err := url.Parse(*dsn)
	if err != nil {
		return fmt.Errorf("--postgres-dsn: %w", err)
	}
	role := dbaccess.Role(strings.ReplaceAll(*prefix, ".", "_"), *dept)
	path := filepath.Join(*secrets, "db-credentials.json")
	pw, err := access.ReadSecret(path, role)
	if err != nil {
		return fmt.Errorf("%s: %w (the bus makes it when it reconciles the roles)", path, err)
	}
	u.User = url.UserPassword(role, pw)
	fmt.Fprintln(out, u.String())
	return nil
}
