package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/internal/app/federation"
	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/schemas"
)

const devDesc = `Runs the whole bus on this machine until Ctrl-C (SIGINT) or SIGTERM: an embedded
Kafka cluster (franz-go's kfake) with SASL/SCRAM and ACLs on, the schema registry,
one topic per catalog item, and the pipelines into PostgreSQL (the base databases)
and ClickHouse (analytics). Everything is kept under --data-dir, so stopping and
starting again keeps every record, every schema and every sink's position.
Item topics are created by 'jutong catalog apply', or at start with --apply.

Secure by default: Kafka speaks SASL_SSL only and the registry and the API HTTPS
only, with certificates of a private CA made in --data-dir/tls (clients trust
ca.pem); the admin's password is made at the first start and kept, with what the
CLI needs to act as the admin, in --data-dir/jutong.env (0600); the local
databases get passwords of their own. See docs/security.md.

--federation N runs a city bus and N district buses instead, each a jutong dev
process of its own (its own catalog, data directory and ports, from
--federation-port), one PostgreSQL and one ClickHouse server with a database per
bus, each district granted residents (masked) and enterprises on the city, and a
bridge process per district carrying them down (docs/federation.md); synthetic
city departments publish, the summary says what landed where, and a dispute raised
in the first district crosses to the city, whose correction comes back down with
the district's receipts.`

func runDev(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("dev", devDesc, errOut)
	var s stack.Flags
	s.Register(fs, ".jutong")
	fed := fs.Int("federation", 0, "run a city bus and this many district buses, and their bridges (separate processes; docs/federation.md)")
	fedPort := fs.Int("federation-port", 19000, "with --federation: the first port; bus i takes port+10i (Kafka), +1 (registry), +2 (API), +3 (its bridge's metrics)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := cmdflag.Logger(errOut, s.Verbose)
	if *fed > 0 {
		return runFederation(ctx, s.DataDir, *fed, *fedPort, s.Verbose, out, log)
	}
	st, err := stack.Start(ctx, &s, "jutong", false, log)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Jutong is running (Ctrl-C to stop):")
	st.Describe(out)
	if !s.Apply {
		fmt.Fprintln(out, "Item topics are created by 'jutong catalog apply' (or start with --apply).")
	}
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-st.Bus.Errors():
	}
	return errors.Join(failed, stack.StopWithin(out, s.ShutdownTimeout, st.Close))
}

// runFederation runs a city bus and n district buses with their bridges,
// publishes on the city, and prints what sank to each district.
func runFederation(ctx context.Context, dataDir string, n, port int, verbose bool, out io.Writer, log *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Starting a city bus and %d district buses under %s (this takes a minute)...\n", n, filepath.Join(dataDir, "federation"))
	f, err := federation.Start(ctx, federation.Options{DataDir: filepath.Join(dataDir, "federation"), Districts: n, BasePort: port, Verbose: verbose, Log: log,
		Command: func(args ...string) *exec.Cmd { return exec.Command(exe, args...) }})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "Stopping the bridges, the buses and the databases...")
		f.Close()
	}()
	counts := map[string]int{}
	var target *schemas.Event
	for i, r := range federation.DefaultReceives {
		evs, err := f.Publish(ctx, r.Item, 300, uint64(i+1))
		if err != nil {
			return err
		}
		keys := map[string]bool{}
		for _, e := range evs {
			keys[e.Key] = true
			if e.Op != schemas.OpDelete && r.Item == "legal_person.enterprise_registration" {
				target = e
			}
		}
		counts[r.Item] = len(keys)
	}
	fmt.Fprintln(out, "Jutong federation is running (Ctrl-C to stop):")
	f.Describe(out)
	fmt.Fprintln(out, "\nWhat sank from the city to each district (rows in the district's PostgreSQL):")
	for _, d := range f.Districts {
		for _, r := range federation.DefaultReceives {
			got, err := waitRows(ctx, d.PGDSN, r.Item, counts[r.Item], time.Minute)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "  %-10s %-40s %d of %d records (masked as its grant says, provenance in column upstream)\n", d.Name, r.Item, got, counts[r.Item])
		}
	}
	c, err := f.CorrectAcross(ctx, 0, target, 3*time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nA correction across the levels: %s's civil affairs disputed enterprise %s's name (%s); the bridge raised it on the city (%s);\n"+
		"the city's market supervision corrected it (event %s); the correction came down and closed %s's dispute, landed:\n", c.District, target.Key, c.Down, c.Up, c.EventID, c.District)
	for _, r := range c.Receipts {
		fmt.Fprintf(out, "  %-12s %s partition %d offset %d at %s\n", r.Sink, r.Topic, r.Partition, r.Offset, r.Landed.Format(time.RFC3339))
	}
	<-ctx.Done()
	return nil
}

// waitRows waits until the item's table in the database has want rows (or
// the wait ends) and returns how many it has.
func waitRows(ctx context.Context, dsn, item string, want int, wait time.Duration) (int, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	d, n, _ := strings.Cut(item, ".")
	q := "SELECT count(*) FROM " + pgx.Identifier{d, n}.Sanitize()
	deadline := time.Now().Add(wait)
	got := 0
	for {
		err := conn.QueryRow(ctx, q).Scan(&got)
		if (err == nil && got >= want) || time.Now().After(deadline) || ctx.Err() != nil {
			return got, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}
