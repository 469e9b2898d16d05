package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/producers/fileadapter"
)

func runFileAdapter(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("adapter file", adapterDesc+"\n\nUsage: jutong adapter file --item CODE [flags] EXTRACT...", errOut)
	var c conn
	c.register(fs)
	item := fs.String("item", "", "the catalog item the extracts hold (required)")
	format := fs.String("format", "", "csv or jsonl; default: from the file name")
	stateDir := fs.String("state-dir", filepath.Join(".jutong", "adapters"), "where the previous extract's state is kept")
	corrects := fs.String("corrects-column", "", "a column (CSV) or field (JSONL) naming the dispute a row's change corrects (empty: none); docs/disputes.md")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *item == "" || fs.NArg() == 0 {
		return errors.New("--item and at least one extract file are required (see jutong adapter file --help)")
	}
	cat, it, k, err := c.resolve(*item)
	if err != nil {
		return err
	}
	popts, err := c.publisherConn(k)
	if err != nil {
		return err
	}
	pub, err := producers.New(ctx, cat, c.department, popts, producers.Adapter("file"), producers.Logger(cmdflag.Logger(errOut, c.verbose)))
	if err != nil {
		return err
	}
	defer pub.Close()
	var progress io.Writer
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && errOut == os.Stderr {
		progress = errOut // a progress bar only on a terminal
	}
	state := filepath.Join(*stateDir, it.Code+"."+c.department+".state.json")
	// Extracts are applied in the order given: each is diffed against the one before.
	for _, path := range fs.Args() {
		f := fileadapter.Format(*format)
		if f == "" {
			switch strings.ToLower(filepath.Ext(path)) {
			case ".csv":
				f = fileadapter.CSV
			case ".jsonl", ".ndjson":
				f = fileadapter.JSONL
			default:
				return fmt.Errorf("%s: cannot tell the format from the name: pass --format csv or jsonl", path)
			}
		}
		file, err := os.Open(path)
		if err != nil {
			return err
		}
		a, err := fileadapter.New(ctx, fileadapter.Config{Item: it, Publisher: pub, State: state, Extract: file, Format: f, Progress: progress, CorrectsColumn: *corrects})
		if err == nil {
			err = a.Run(ctx)
		}
		file.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Fprintf(out, "%s: %s\n", path, a.Summary())
	}
	return nil
}
