package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/procstat"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/topicname"
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
	apart := fs.Bool("brokers-process", false, "run the 3 brokers in a process of their own (jutong bench brokers): the CPU printed for the door is then the door's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var external *kafkaconn.Config
	var bp *brokersProcess
	if *apart {
		var err error
		if bp, err = startBrokers(ctx, 3, "jutong", "bench", errOut); err != nil {
			return err
		}
		defer bp.Stop()
		external = &bp.Kafka
	}
	cat, it, err := sampleItem(*item)
	if err != nil {
		return err
	}
	b, pub, err := benchBus(ctx, cat, it, 3, external)
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
	var k0 time.Duration
	if bp != nil {
		k0 = procstat.Tree(bp.Pid())
	}
	start := time.Now()
	go func() { _ = d.Run(dctx) }()
	// Done when the door's committed offsets reach the inbox's end (no
	// transaction markers there: the SDK's producer is idempotent, not
	// transactional), asked of the brokers with one client: reading the
	// records still to forward, as the bus's Lag does, would cost this
	// process more than the door.
	kcfg := b.Kafka()
	admin, err := kcfg.Client()
	if err != nil {
		return err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	inbox := topicname.Inbox(it.Source)
	ends, err := adm.ListEndOffsets(ctx, inbox)
	if err != nil {
		return err
	}
	for {
		committed, err := adm.FetchOffsets(ctx, d.Group())
		done := err == nil
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup(o.Topic, o.Partition)
			done = done && ok && c.At >= o.Offset
		})
		if done {
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
	what := "door and brokers together"
	if bp != nil {
		what = "the door's process"
	}
	fmt.Fprintf(out, "  CPU (%s)%*s user %.2fs  sys %.2fs = %.2f cores, %.1f µs CPU per event\n", what, max(0, 36-len(what)), "",
		user.Seconds(), sys.Seconds(), (user+sys).Seconds()/wall.Seconds(), float64((user+sys).Microseconds())/float64(*events))
	if bp != nil {
		k := procstat.Tree(bp.Pid()) - k0
		fmt.Fprintf(out, "  CPU (the brokers' process)                user %.2fs (user+sys) = %.2f cores, %.1f µs CPU per event\n",
			k.Seconds(), k.Seconds()/wall.Seconds(), float64(k.Microseconds())/float64(*events))
	}
	fmt.Fprintf(out, "  peak RSS                                   %10.0f MiB\n", float64(after.maxRSS)/1024)
	return nil
}
