package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/internal/cmdflag"
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
databases get passwords of their own. See docs/security.md.`

func runDev(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("dev", devDesc, errOut)
	var s stack.Flags
	s.Register(fs, ".jutong")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := cmdflag.Logger(errOut, s.Verbose)
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
