package rules_test

import (
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/schemas"
)

// BenchmarkCheck checks a 15-field item's change events at the door.
func BenchmarkCheck(b *testing.B) {
	cat, _ := catalog.Sample()
	it := cat.Item("legal_person.enterprise_registration")
	g := synth.New(it, 1, time.Now())
	evs := make([]*schemas.Event, 1024)
	for i := range evs {
		evs[i] = g.Next()
	}
	now := time.Now().Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v := rules.Check(it, "market_supervision", evs[i%len(evs)], now); v != nil {
			b.Fatal(v)
		}
	}
}
