package chsink_test

import (
	"context"
	"testing"

	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/sinktest"
)

// BenchmarkWrite is the ClickHouse sink's Write per record (go test -bench
// Write ./pipeline/chsink; the server's own CPU is not counted).
func BenchmarkWrite(b *testing.B) {
	s, err := chsink.New(context.Background(), chsink.Config{Name: "bench", DSN: testenv.ClickHouse(b), NoTypedViews: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sinktest.BenchWrite(b, s)
}
