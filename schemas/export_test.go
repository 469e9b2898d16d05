package schemas

import "github.com/hamba/avro/v2"

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
