// Package cli implements the jutong command's subcommands: each parses its
// flags (with environment defaults), wires the packages and runs until done
// or interrupted.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, out, errOut io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "run the whole bus on this machine until Ctrl-C (embedded Kafka, registry, pipelines)", runDev},
		{"demo", "run the bus with synthetic departments publishing, and print where the data landed", runDemo},
		{"serve", "run the registry and pipelines against an existing Kafka cluster and databases", runServe},
		{"catalog", "list, show, check and apply the catalog (topics and schemas)", runCatalog},
		{"adapter", "publish a department's table (adapter sql) or file extracts (adapter file)", runAdapter},
		{"sink", "operate on the sinks: replay an item into a sink (sink replay)", runSink},
		{"apply", "apply, as a department, to read a catalog item (the demand list)", runApply},
		{"approve", "approve an application (the data authority, then the item's source)", runDecide("approve")},
		{"refuse", "refuse an application, with the reason", runDecide("refuse")},
		{"revoke", "revoke a grant, with the reason", runDecide("revoke")},
		{"applications", "list applications, their state and deadlines (--overdue: escalated)", runApplications},
		{"grants", "list active grants and what each delivers (--show)", runGrants},
		{"responsibilities", "print the responsibility list: what each department must publish, how often", runResponsibilities},
		{"dept", "departments as Kafka principals: list, rotate a password", runDept},
		{"bench", "measure the bus on this machine and print the figures (bench [pipeline|publish|topics])", runBench},
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

// newFlags makes a flag set whose usage prints the command's description.
func newFlags(name, desc string, errOut io.Writer) *flagSet {
	fs := flag.NewFlagSet("jutong "+name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprintf(errOut, "Usage: jutong %s [flags]\n\n%s\n\nFlags:\n", name, desc)
		fs.PrintDefaults()
	}
	return &flagSet{FlagSet: fs}
}

// flagSet is a command's flags. Those that an environment variable can set
// declare it once (envString and the like): its value, when set, is the
// flag's default, and the flag's help names it. Parse takes flags after
// positional arguments as well ("approve ID --grade 2").
type flagSet struct {
	*flag.FlagSet
	envErr error    // an environment value that is not of its flag's type
	pos    []string // the positional arguments, after Parse
}

func (f *flagSet) envString(name, key, def, usage string) *string {
	p := new(string)
	f.envStringVar(p, name, key, def, usage)
	return p
}

func (f *flagSet) envStringVar(p *string, name, key, def, usage string) {
	if v, ok := os.LookupEnv(key); ok {
		def = v
	}
	f.StringVar(p, name, def, usage+" ("+key+")")
}

func (f *flagSet) envIntVar(p *int, name, key string, def int, usage string) {
	if v, ok := os.LookupEnv(key); ok {
		n, err := strconv.Atoi(v)
		if err != nil && f.envErr == nil {
			f.envErr = fmt.Errorf("%s=%q: not a number", key, v)
		}
		def = n
	}
	f.IntVar(p, name, def, usage+" ("+key+")")
}

// Parse parses the flags wherever they stand among the positional arguments.
func (f *flagSet) Parse(args []string) error {
	if f.envErr != nil {
		return f.envErr
	}
	f.pos = nil
	for {
		if err := f.FlagSet.Parse(args); err != nil {
			return err
		}
		if f.FlagSet.NArg() == 0 {
			return nil
		}
		f.pos, args = append(f.pos, f.FlagSet.Arg(0)), f.FlagSet.Args()[1:]
	}
}

// Args, Arg and NArg are the positional arguments.
func (f *flagSet) Args() []string { return f.pos }

func (f *flagSet) Arg(i int) string {
	if i < 0 || i >= len(f.pos) {
		return ""
	}
	return f.pos[i]
}

func (f *flagSet) NArg() int { return len(f.pos) }

func parsePorts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("bad port %q in %q", p, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
