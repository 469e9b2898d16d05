package sinktest

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
)

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchWrite measures a sink's Write per record (b.N records, in batches
// of 5,000 as the runner's default, one update per three creates), with
// allocations: the sink stage of the bus's CPU per event.
func BenchWrite(b *testing.B, s pipeline.Sink) {
	ctx := context.Background()
	cat, _ := catalog.Sample()
	it := cat.Item("legal_person.enterprise_registration")
	if err := s.Prepare(ctx, cat.Items); err != nil { // the themes want their items
		b.Fatal(err)
	}
	g := synth.New(it, 9, time.Now())
	g.UpdateEvery, g.DeleteEvery = 4, 0
	const batch = 5000
	pool := make([]pipeline.Record, 0, 4*batch)
	for i := range cap(pool) {
		ev := g.Next()
		ev.Source.Department, ev.PublishTime = it.Source, time.Now()
		pool = append(pool, pipeline.Record{Item: it, Partition: 0, Event: ev, Offset: int64(i)})
	}
	offset := int64(0)
	b.ReportAllocs()
	b.ResetTimer()
	before := cpuTime()
	defer func() {
		// This process's CPU per record (the sink's own, without the
		// database's): the wall time per op includes waiting on the server.
		b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}()
	for done := 0; done < b.N; done += batch {
		recs := make([]pipeline.Record, 0, batch)
		for i := 0; i < batch && done+i < b.N; i++ {
			r := pool[(done+i)%len(pool)]
			r.Offset = offset
			offset++
			recs = append(recs, r)
		}
		if err := s.Write(ctx, recs, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
