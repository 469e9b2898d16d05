package producers_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

// BenchmarkPublish publishes a 15-field item's events through the SDK
// (checked, encoded, produced) to an embedded one-broker cluster, and
// waits for every acknowledgement. See also: jutong bench publish.
func BenchmarkPublish(b *testing.B) {
	bs, cat := startBus(b)
	pub := publisherAs(b, bs, cat, "market_supervision", nil)
	g := synth.New(cat.Item(item), 1, time.Now())
	g.DeleteEvery = 0
	pool := make([]*schemas.Event, 10_000)
	for i := range pool {
		pool[i] = g.Next()
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	done := func(r producers.Result) {
		if r.Err != nil {
			b.Error(r.Err)
		}
		wg.Done()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += 1000 {
		n := min(1000, b.N-sent)
		wg.Add(n)
		if err := pub.PublishAsync(ctx, item, done, pool[sent%len(pool):sent%len(pool)+n]...); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
