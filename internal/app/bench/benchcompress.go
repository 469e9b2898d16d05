package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/schemas"
)

// benchCompression runs `jutong bench compression`: what each codec costs
// the bus (compressing what it writes) and every reader (decompressing it),
// on batches of an item's Confluent-framed Avro records as the door writes
// them, with franz-go's own codecs (the ones the bus uses).
func benchCompression(_ context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("bench compression", benchDesc, errOut)
	item := fs.String("item", "legal_person.enterprise_registration", "the catalog item")
	events := fs.Int("events", 200_000, "records compressed and decompressed per codec")
	batch := fs.Int("batch", 500, "records in one batch (one compression call, as a produce batch)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, it, err := sampleItem(*item)
	if err != nil {
		return err
	}
	s, err := schemas.For(it)
	if err != nil {
		return err
	}
	// Batches of real records: length-prefixed, as a record batch holds them.
	gen := synth.New(it, 1, time.Now())
	var batches [][]byte
	raw := 0
	for n := 0; n < *events; {
		var b []byte
		for i := 0; i < *batch && n < *events; i, n = i+1, n+1 {
			e := gen.Next()
			e.Source = schemas.Source{Department: it.Source, System: "bench", Adapter: "sdk"}
			e.PublishTime = time.Now().UTC().Truncate(time.Millisecond)
			body, err := s.Encode(e)
			if err != nil {
				return err
			}
			rec := schemas.Frame(nil, 1, body)
			b = append(b, byte(len(rec)), byte(len(rec)>>8))
			b = append(b, rec...)
		}
		raw += len(b)
		batches = append(batches, b)
	}
	fmt.Fprintf(out, "jutong bench compression: %s, %d records in batches of %d, %.0f bytes a record uncompressed\n", it.Code, *events, *batch, float64(raw)/float64(*events))
	fmt.Fprintf(out, "  %-8s %9s %16s %16s   %s\n", "codec", "ratio", "compress ns/rec", "decompress ns/rec", "readers that need a plug-in")
	dec := kgo.DefaultDecompressor()
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
		typ   kgo.CompressionCodecType
		needs string
	}{
		{"none", kgo.NoCompression(), kgo.CodecNone, "-"},
		{"gzip", kgo.GzipCompression(), kgo.CodecGzip, "- (every client has it)"},
		{"snappy", kgo.SnappyCompression(), kgo.CodecSnappy, "kafkajs: kafkajs-snappy (pure JS)"},
		{"lz4", kgo.Lz4Compression(), kgo.CodecLz4, "kafkajs: kafkajs-lz4 (native build)"},
		{"zstd", kgo.ZstdCompression(), kgo.CodecZstd, "kafkajs: @kafkajs/zstd (native build)"},
	} {
		comp, err := kgo.DefaultCompressor(c.codec)
		if err != nil {
			return err
		}
		compressed := make([][]byte, len(batches))
		var buf bytes.Buffer
		cpu := func() time.Duration { u := resourceUsage(); return u.user + u.sys }
		start := cpu()
		out0 := 0
		for i, b := range batches {
			buf.Reset()
			got := b
			if comp != nil { // nil: no compression
				got, _ = comp.Compress(&buf, b)
			}
			compressed[i] = append([]byte(nil), got...)
			out0 += len(got)
		}
		compCPU := cpu() - start
		start = cpu()
		for _, b := range compressed {
			if c.typ == kgo.CodecNone {
				continue
			}
			if _, err := dec.Decompress(b, c.typ); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
		decCPU := cpu() - start
		fmt.Fprintf(out, "  %-8s %9.2f %16.0f %16.0f   %s\n", c.name, float64(raw)/float64(out0),
			float64(compCPU.Nanoseconds())/float64(*events), float64(decCPU.Nanoseconds())/float64(*events), c.needs)
	}
	fmt.Fprintln(out, "  (CPU time of this process, getrusage; ratio = uncompressed / compressed bytes)")
	return nil
}
