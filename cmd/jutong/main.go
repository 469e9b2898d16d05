// Command jutong is the one binary of the Jutong data exchange bus; `jutong
// help` lists its subcommands.
//
// JUTONG_CPUPROFILE=file writes a CPU profile of the whole run to file, and
// JUTONG_MEMPROFILE=file a heap profile at its end (for `go tool pprof`),
// whatever the subcommand.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/jutong/jutong/internal/app/cli"
)

func main() {
	// Whatever jutong writes is its owner's alone: the embedded cluster's
	// SASL state and partitions (unmasked citizen IDs), the departments'
	// credentials and tokens, the local databases' files.
	syscall.Umask(0o077)
	if path := os.Getenv("JUTONG_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "jutong: JUTONG_CPUPROFILE:", err)
			os.Exit(2)
		}
		defer f.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	pprof.StopCPUProfile()
	if path := os.Getenv("JUTONG_MEMPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
	}
	os.Exit(code)
}
