package pgsink_test

import (
	"context"
	"testing"

	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/pipeline/sinktest"
)

// BenchmarkWrite is the PostgreSQL sink's Write per record (go test -bench
// Write ./pipeline/pgsink; the server's own CPU is not counted).
func BenchmarkWrite(b *testing.B) {
	cat, _ := catalog.Sample()
	s, err := pgsink.New(context.Background(), pgsink.Config{Name: "bench", DSN: testenv.Postgres(b), Themes: cat.Themes})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sinktest.BenchWrite(b, s)
}
