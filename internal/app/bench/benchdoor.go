package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/door"
)

// benchDoor measures the door alone: an inbox filled beforehand, then one
// door forwarding it, exactly once, to the item's topic.
func benchDoor(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("bench door", benchDesc, errOut)
	events := fs.Int("events", 500_000, "events in the inbox")
	item := fs.String("item", "legal_person.enterprise_registration", "the catalog item (the default has 15 fields)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the forwarding (the door and the brokers) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cat, it, err := sampleItem(*item)
	if err != nil {
		return err
	}
	b, pub, err := benchBus(ctx, cat, it, 3)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	defer pub.Close()
	g := synth.New(it, 1, time.Now())
	g.DeleteEvery = 0
	fmt.Fprintf(out, "jutong bench door: %d events of %s (%d fields) in the inbox, 3 embedded brokers, GOMAXPROCS %d\n",
		*events, it.Code, len(it.Fields), runtime.GOMAXPROCS(0))
	var failed atomic.Int64
	var wg sync.WaitGroup
	for sent := 0; sent < *events; sent += 2000 {
		batch := make([]*schemas.Event, min(2000, *events-sent))
		for i := range batch {
			batch[i] = g.Next()
		}
		wg.Add(len(batch))
		if err := pub.PublishAsync(ctx, it.Code, func(r producers.Result) {
			if r.Err != nil {
				failed.Add(1)
			}
			wg.Done()
		}, batch...); err != nil {
			return err
		}
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d events did not reach the inbox", f)
	}
	d, err := door.New(ctx, b.DoorConfig())
	if err != nil {
		return err
	}
	defer d.Close()
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	stopProfile, err := cpuProfile(*profile)
	if err != nil {
		return err
	}
	defer stopProfile()
	before := resourceUsage()
	start := time.Now()
	go func() { _ = d.Run(dctx) }()
	for {
		lag, err := b.Lag(ctx)
		if err == nil && lag["door"] == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	wall := time.Since(start)
	after := resourceUsage()
	user, sys := after.user-before.user, after.sys-before.sys
	fmt.Fprintf(out, "  forwarded through the door, exactly once   %10.0f events/s  (%d in %s)\n",
		float64(*events)/wall.Seconds(), *events, wall.Round(time.Millisecond))
	fmt.Fprintf(out, "  CPU (door and brokers together)            user %.2fs  sys %.2fs = %.2f cores, %.1f µs CPU per event\n",
		user.Seconds(), sys.Seconds(), (user+sys).Seconds()/wall.Seconds(), float64((user+sys).Microseconds())/float64(*events))
	fmt.Fprintf(out, "  peak RSS                                   %10.0f MiB\n", float64(after.maxRSS)/1024)
	return nil
}
