// Package cli is the jutong command: it dispatches to the subcommands, each
// of which parses its flags (internal/cmdflag), calls the packages that do
// the work (internal/app/stack, bus, demo, bench; control.Client; the
// adapters) and prints what they return.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/jutong/jutong/internal/app/bench"
	"github.com/jutong/jutong/internal/app/demo"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, out, errOut io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "run the whole bus on this machine until Ctrl-C (embedded Kafka, registry, pipelines)", runDev},
		{"demo", "run the bus with synthetic departments publishing, and print where the data landed", demo.Run},
		{"serve", "run the registry and pipelines against an existing Kafka cluster and databases", runServe},
		{"certs", "make a private CA and a server certificate for TLS (what dev and demo do in their data directory)", runCerts},
		{"proposal", "propose catalog items and changes, review them, their versions (proposal submit|list|approve|changes|refuse|history|diff)", runProposal},
		{"catalog", "list, show, check and apply the catalog (topics and schemas)", runCatalog},
		{"adapter", "publish a department's table (adapter sql) or file extracts (adapter file)", runAdapter},
		{"sink", "operate on the sinks: replay an item into a sink (sink replay)", runSink},
		{"apply", "apply, as a department, to read a catalog item (the demand list)", runApply},
		{"approve", "approve an application (the data authority, then the item's source)", runDecide("approve")},
		{"refuse", "refuse an application, with the reason", runDecide("refuse")},
		{"revoke", "revoke a grant, with the reason", runDecide("revoke")},
		{"applications", "list applications, their state and deadlines (--overdue: escalated)", runApplications},
		{"grants", "list active grants and what each delivers (--show)", runGrants},
		{"dispute", "dispute a shared record, and answer disputes as its source (raise, list, reject, correct)", runDispute},
		{"snapshot", "take an item's current state as a grant sees it, with the positions to follow from", runSnapshot},
		{"responsibilities", "print the responsibility list: what each department must publish, how often", runResponsibilities},
		{"db", "hand out a department's PostgreSQL login, which reads its grants' masked tables only (db login)", runDB},
		{"audit", "check the audit trail's hash chains and signatures (audit verify), print the bus's public key (audit key)", runAudit},
		{"dept", "departments as Kafka principals: list, rotate a password", runDept},
		{"bridge", "carry the items another bus granted this one into this bus, exactly once (bridge [run|status|item])", runBridge},
		{"bench", "measure the bus on this machine and print the figures (bench [pipeline|publish|door|topics|query|open|federation])", bench.Run},
	}
}

// Run runs the subcommand named by args[0] and returns the exit code.
func Run(ctx context.Context, args []string, out, errOut io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(out)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], out, errOut)
			if err == nil || errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(errOut, "jutong %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(errOut, "jutong: unknown command %q\n\n", args[0])
	usage(errOut)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "jutong (聚通) — the government data exchange bus\n\nUsage: jutong <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'jutong <command> --help' for a command's flags. Every flag can also be set by the\nenvironment variable shown in its help.")
}
