package registry

import (
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

func rec(fields string) avro.Schema {
	return avro.MustParse(`{"type":"record","name":"R","namespace":"t","fields":[` + fields + `]}`)
}

func TestCheckLevels(t *testing.T) {
	v1 := rec(`{"name":"k","type":"string"},{"name":"a","type":"string"}`)
	v2 := rec(`{"name":"k","type":"string"}`)
	v3 := rec(`{"name":"k","type":"string"},{"name":"a","type":"int","default":0}`)
	history := []avro.Schema{v1, v2}
	if msgs := Check(Backward, v3, history); len(msgs) != 0 {
		t.Fatalf("BACKWARD compares with the latest only: %v", msgs)
	}
	msgs := Check(BackwardTransitive, v3, history)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "field a: type changed from string to int") {
		t.Fatalf("BACKWARD_TRANSITIVE must see v1's string a: %v", msgs)
	}
	if msgs := Check(None, v3, history); msgs != nil {
		t.Fatalf("NONE: %v", msgs)
	}
	cases := []struct {
		name, old, new string
		level          Level
		want           string // "" means compatible
	}{
		{"promotion int to long", `{"name":"n","type":"int"}`, `{"name":"n","type":"long"}`, Backward, ""},
		{"demotion long to int", `{"name":"n","type":"long"}`, `{"name":"n","type":"int"}`, Backward, "field n: type changed from long to int"},
		{"optional made required", `{"name":"n","type":["null","string"],"default":null}`, `{"name":"n","type":"string"}`, Backward, "field n: null values (a branch of the writer's union) cannot be read as string"},
		{"required made optional", `{"name":"n","type":"string"}`, `{"name":"n","type":["null","string"],"default":null}`, Full, "field n: null values (a branch of the writer's union) cannot be read as string"},
		{"enum symbol removed", `{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}`, `{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}`, Backward, "field e: symbols B were removed"},
		{"enum symbol added, forward", `{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}}`, `{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}`, Forward, "field e: symbols B were removed"},
		{"decimal scale changed", `{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":2}}`, `{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":4}}`, Backward, "logical type changed from bytes/decimal(18,2) to bytes/decimal(18,4)"},
		{"field renamed with alias", `{"name":"old","type":"string"}`, `{"name":"new","type":"string","aliases":["old"]}`, Backward, ""},
		{"field added with default", `{"name":"k","type":"string"}`, `{"name":"k","type":"string"},{"name":"x","type":"long","default":1}`, Full, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs := Check(c.level, rec(c.new), []avro.Schema{rec(c.old)})
			switch {
			case c.want == "" && len(msgs) > 0:
				t.Fatalf("want compatible, got %v", msgs)
			case c.want != "" && (len(msgs) == 0 || !strings.Contains(strings.Join(msgs, "\n"), c.want)):
				t.Fatalf("want %q, got %v", c.want, msgs)
			}
		})
	}
}
