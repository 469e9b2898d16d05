package schemas

import (
	"github.com/hamba/avro/v2"

	"github.com/jutong/jutong/model/catalog"
)

// DecodeCompiled decodes with the compiled decoder (for the tests that
// compare it with hamba/avro).
func DecodeCompiled(writer avro.Schema, payload []byte) (*Event, error) {
	d, err := compileEnvelope(writer)
	if err != nil {
		return nil, err
	}
	return d.decode(payload)
}

// CompiledDecoder compiles once, for benchmarks.
func CompiledDecoder(writer avro.Schema) (func([]byte) (*Event, error), error) {
	d, err := compileEnvelope(writer)
	if err != nil {
		return nil, err
	}
	return d.decode, nil
}

// DecodeColumnsWith decodes payload, written with writer, as a row of c
// with the column decoder (no registry).
func DecodeColumnsWith(writer avro.Schema, c *Columns, payload []byte) error {
	p, err := planEnvelope(writer)
	if err != nil {
		return err
	}
	d := p.decoderFor(c.Item)
	if d == nil {
		return errShape
	}
	return d.decode(c, payload)
}

// ColumnDecoder compiles once, for benchmarks.
func ColumnDecoder(writer avro.Schema, it *catalog.Item) (func(*Columns, []byte) error, error) {
	p, err := planEnvelope(writer)
	if err != nil {
		return nil, err
	}
	d := p.decoderFor(it)
	if d == nil {
		return nil, errShape
	}
	return d.decode, nil
}
