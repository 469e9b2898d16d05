// Package cmdflag is how jutong's subcommands take their settings: a flag set
// whose flags name, once, the environment variable that may set them, that
// takes flags after positional arguments too, and the logger every command
// writes to.
package cmdflag

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// New makes a flag set whose usage prints the command's description.
func New(name, desc string, errOut io.Writer) *FlagSet {
	fs := flag.NewFlagSet("jutong "+name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprintf(errOut, "Usage: jutong %s [flags]\n\n%s\n\nFlags:\n", name, desc)
		fs.PrintDefaults()
	}
	return &FlagSet{FlagSet: fs}
}

// FlagSet is a command's flags. Those that an environment variable can set
// declare it once (EnvString and the like): its value, when set, is the
// flag's default, and the flag's help names it. Parse takes flags after
// positional arguments as well ("approve ID --grade 2").
type FlagSet struct {
	*flag.FlagSet
	envErr error    // an environment value that is not of its flag's type
	pos    []string // the positional arguments, after Parse
}

// EnvString declares a string flag that the environment variable key can set.
func (f *FlagSet) EnvString(name, key, def, usage string) *string {
	p := new(string)
	f.EnvStringVar(p, name, key, def, usage)
	return p
}

// EnvStringVar is EnvString into p.
func (f *FlagSet) EnvStringVar(p *string, name, key, def, usage string) {
	if v, ok := os.LookupEnv(key); ok {
		def = v
	}
	f.StringVar(p, name, def, usage+" ("+key+")")
}

// EnvIntVar declares an int flag that key can set; a value that is not a
// number fails Parse.
func (f *FlagSet) EnvIntVar(p *int, name, key string, def int, usage string) {
	if v, ok := os.LookupEnv(key); ok {
		n, err := strconv.Atoi(v)
		if err != nil && f.envErr == nil {
			f.envErr = fmt.Errorf("%s=%q: not a number", key, v)
		}
		def = n
	}
	f.IntVar(p, name, def, usage+" ("+key+")")
}

// EnvBoolVar declares a bool flag that key can set (true, false, 1, 0...);
// another value fails Parse.
func (f *FlagSet) EnvBoolVar(p *bool, name, key string, def bool, usage string) {
	if v, ok := os.LookupEnv(key); ok {
		b, err := strconv.ParseBool(v)
		if err != nil && f.envErr == nil {
			f.envErr = fmt.Errorf("%s=%q: not true or false", key, v)
		}
		def = b
	}
	f.BoolVar(p, name, def, usage+" ("+key+")")
}

// EnvDurationVar declares a duration flag that key can set; a value that is
// not a duration fails Parse.
func (f *FlagSet) EnvDurationVar(p *time.Duration, name, key string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(key); ok {
		d, err := time.ParseDuration(v)
		if err != nil && f.envErr == nil {
			f.envErr = fmt.Errorf("%s=%q: not a duration", key, v)
		}
		def = d
	}
	f.DurationVar(p, name, def, usage+" ("+key+")")
}

// Parse parses the flags wherever they stand among the positional arguments.
func (f *FlagSet) Parse(args []string) error {
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
func (f *FlagSet) Args() []string { return f.pos }

func (f *FlagSet) Arg(i int) string {
	if i < 0 || i >= len(f.pos) {
		return ""
	}
	return f.pos[i]
}

func (f *FlagSet) NArg() int { return len(f.pos) }

// ParsePorts parses a comma-separated list of TCP ports.
func ParsePorts(s string) ([]int, error) {
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

// Logger logs to w: warnings and errors, and progress (info) when verbose.
func Logger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
