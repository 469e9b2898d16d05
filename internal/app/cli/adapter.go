package cli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	_ "github.com/go-sql-driver/mysql" // the mysql driver for MariaDB/MySQL sources
	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver for PostgreSQL sources

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/producers/sqladapter"
	"github.com/jutong/jutong/server/access"
)

const adapterDesc = `Publishes a department's data as change events of a catalog item.

Subcommands:
  sql    a database table (PostgreSQL or MySQL/MariaDB): a snapshot of every row, then
         the rows changed since, by an updated-at (or increasing) column; soft deletes
         by a column. Exactly once: events and the adapter's checkpoint are committed in
         one Kafka transaction, so a restart resumes where it stopped.
  file   successive full extracts (CSV or JSONL) of an item, diffed into creates,
         updates and deletes.`

// conn are the connection flags every adapter takes.
type conn struct {
	net                                 cmdflag.Conn
	catalogDir, department, credentials string
	verbose                             bool
}

func (c *conn) register(fs *cmdflag.FlagSet) {
	fs.EnvStringVar(&c.catalogDir, "catalog", "JUTONG_CATALOG", "", "catalog directory; empty: the sample built into jutong")
	c.net.Register(fs, cmdflag.ConnDefaults{Brokers: "127.0.0.1:9092", Registry: "https://127.0.0.1:8081",
		UserIs: "default: the department's principal, its password from --credentials"})
	fs.EnvStringVar(&c.department, "department", "JUTONG_DEPARTMENT", "", "the publishing department; default: the item's source")
	fs.EnvStringVar(&c.credentials, "credentials", "JUTONG_CREDENTIALS", filepath.Join(".jutong", "credentials.json"), "the departments' SCRAM passwords, as jutong dev writes them")
	fs.BoolVar(&c.verbose, "v", false, "log progress (info level) to stderr")
}

// resolve loads the catalog and the department's Kafka identity.
func (c *conn) resolve(itemCode string) (*catalog.Catalog, *catalog.Item, kafkaconn.Config, error) {
	var k kafkaconn.Config
	cat, err := stack.LoadCatalog(c.catalogDir)
	if err != nil {
		return nil, nil, k, err
	}
	it := cat.Item(itemCode)
	if it == nil {
		return nil, nil, k, fmt.Errorf("no catalog item %q (see jutong catalog list)", itemCode)
	}
	if c.department == "" {
		c.department = it.Source
	}
	d := cat.Department(c.department)
	if d == nil {
		return nil, nil, k, fmt.Errorf("no department %q", c.department)
	}
	k = c.net.Kafka()
	if k.User == "" {
		k.User = d.Principal
	}
	if k.Password == "" {
		creds, err := access.ReadCredentials(c.credentials)
		if err != nil {
			return nil, nil, k, err
		}
		k.Password = creds[k.User]
		if k.Password == "" {
			return nil, nil, k, fmt.Errorf("no password for %s in %s: pass --kafka-password", k.User, c.credentials)
		}
	}
	return cat, it, k, nil
}

// publisherConn connects a publisher as k, over TLS with --ca.
func (c *conn) publisherConn(k kafkaconn.Config) (connect.Config, error) {
	tc, err := k.TLS()
	if err != nil {
		return connect.Config{}, err
	}
	return connect.Config{Brokers: k.Brokers, User: k.User, Password: k.Password, Registry: c.net.Registry, TLS: tc}, nil
}

func runAdapter(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || (args[0] != "sql" && args[0] != "file") {
		fmt.Fprintf(errOut, "Usage: jutong adapter <sql|file> [flags]\n\n%s\n", adapterDesc)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errors.New("a subcommand is required: sql or file")
	}
	if args[0] == "file" {
		return runFileAdapter(ctx, args[1:], out, errOut)
	}
	fs := cmdflag.New("adapter sql", adapterDesc, errOut)
	var c conn
	c.register(fs)
	item := fs.String("item", "", "the catalog item the table holds (required)")
	driver := fs.String("driver", "postgres", "postgres or mysql (MariaDB)")
	dsn := fs.EnvString("dsn", "JUTONG_SOURCE_DSN", "", "the source database (pgx or go-sql-driver DSN; for mysql add parseTime=true)")
	table := fs.String("table", "", "the table (required)")
	keyCol := fs.String("key-column", "", "the business key column; default: the item's key field")
	updCol := fs.String("updated-column", "", "an updated-at or increasing column that orders changes; empty: snapshot only")
	delCol := fs.String("deleted-column", "", "a soft-delete column (true, 1 or a time mean deleted)")
	corrCol := fs.String("corrects-column", "", "a column naming the dispute a row's change corrects (empty or NULL: none); docs/disputes.md")
	keyDiff := fs.Duration("key-diff-every", 0, "for rows deleted outright: compare the table's keys with those published, at most this often (e.g. 1h); 0: off")
	name := fs.String("name", "", "the adapter's name, keying its checkpoint; default item@table")
	batch := fs.Int("batch", 1000, "rows per transaction")
	poll := fs.Duration("poll", 5*time.Second, "how often to look for changes")
	once := fs.Bool("once", false, "publish what there is (snapshot, then changes) and exit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *item == "" || *table == "" || *dsn == "" {
		return errors.New("--item, --table and --dsn are required (see jutong adapter sql --help)")
	}
	cat, it, k, err := c.resolve(*item)
	if err != nil {
		return err
	}
	drv := map[string]string{"postgres": "pgx", "mysql": "mysql"}[*driver]
	if drv == "" {
		return fmt.Errorf("--driver %q: want postgres or mysql", *driver)
	}
	db, err := sql.Open(drv, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if *name == "" {
		*name = it.Code + "@" + *table
	}
	log := cmdflag.Logger(errOut, c.verbose)
	kopts, err := k.Opts()
	if err != nil {
		return err
	}
	popts, err := c.publisherConn(k)
	if err != nil {
		return err
	}
	pub, err := producers.New(ctx, cat, c.department, popts, producers.Adapter("sql"), producers.System(*table), producers.Transactional(k.User+".sql."+*name), producers.Logger(log))
	if err != nil {
		return err
	}
	defer pub.Close()
	a, err := sqladapter.New(ctx, sqladapter.Config{Item: it, DB: db, Dialect: sqladapter.Dialect(*driver), Table: *table,
		KeyColumn: *keyCol, UpdatedColumn: *updCol, DeletedColumn: *delCol, CorrectsColumn: *corrCol, KeyDiffEvery: *keyDiff, Name: *name, Batch: *batch, Poll: *poll,
		Publisher: pub, Kafka: kopts, Log: log})
	if err != nil {
		return err
	}
	if !*once {
		fmt.Fprintf(out, "publishing %s from %s as %s (Ctrl-C to stop)\n", it.Code, *table, c.department)
		return a.Run(ctx)
	}
	total := 0
	for {
		n, err := a.Step(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		total += n
	}
	cp := a.Checkpoint()
	fmt.Fprintf(out, "published %d rows of %s from %s as %s (refused ones are kept in _jutong.quarantine; checkpoint %s: %d rows in all, %d unparsable)\n",
		total, it.Code, *table, c.department, *name, cp.Rows, cp.Unparsable)
	return nil
}
