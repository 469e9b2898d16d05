// Command jutong is the one binary of the Jutong data exchange bus; `jutong
// help` lists its subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/jutong/jutong/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
