package schemas

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/jutong/jutong/model/catalog"
)

// Schema is the Avro schema of one item's change events.
type Schema struct {
	Item *catalog.Item
	Avro avro.Schema
	JSON string // canonical text, as registered
	enc  *encoder
}

// envelopeNamespace is the namespace of an item's records.
func envelopeNamespace(it *catalog.Item) string { return "jutong." + it.Code }

// For builds the change-event schema of a catalog item.
func For(it *catalog.Item) (*Schema, error) {
	doc := envelopeDoc(it)
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	s, err := ParseAvro(string(b))
	if err != nil {
		return nil, fmt.Errorf("schemas: item %s: %w", it.Code, err)
	}
	return &Schema{Item: it, Avro: s, JSON: string(b), enc: newEncoder(it)}, nil
}

type obj = map[string]any

func envelopeDoc(it *catalog.Item) obj {
	ns := envelopeNamespace(it)
	fields := make([]any, 0, len(it.Fields))
	for _, f := range it.Fields {
		fields = append(fields, fieldDoc(f))
	}
	value := obj{"type": "record", "name": "Value", "namespace": ns, "doc": it.Name + " (" + it.NameEN + ")", "fields": fields}
	return obj{
		"type": "record", "name": "Envelope", "namespace": ns,
		"doc": "A change event of catalog item " + it.Code,
		"fields": []any{
			obj{"name": "event_id", "type": obj{"type": "string", "logicalType": "uuid"}},
			obj{"name": "op", "type": obj{"type": "enum", "name": "Op", "namespace": "jutong", "symbols": []string{"CREATE", "UPDATE", "DELETE", "SNAPSHOT"}}},
			obj{"name": "key", "type": "string", "doc": "business key: " + it.Key},
			obj{"name": "data", "type": []any{"null", value}, "default": nil, "doc": "the record after the change; null on delete"},
			obj{"name": "source", "type": obj{"type": "record", "name": "Source", "namespace": "jutong", "fields": []any{
				obj{"name": "department", "type": "string"},
				obj{"name": "system", "type": "string"},
				obj{"name": "adapter", "type": "string"},
			}}},
			obj{"name": "event_time", "type": obj{"type": "long", "logicalType": "timestamp-millis"}},
			obj{"name": "publish_time", "type": obj{"type": "long", "logicalType": "timestamp-millis"}},
		},
	}
}

func fieldType(f *catalog.Field) any {
	switch f.Type {
	case catalog.TypeDecimal:
		return obj{"type": "bytes", "logicalType": "decimal", "precision": f.Precision, "scale": f.Scale}
	case catalog.TypeDate:
		return obj{"type": "int", "logicalType": "date"}
	case catalog.TypeTimestamp:
		return obj{"type": "long", "logicalType": "timestamp-millis"}
	case catalog.TypeEnum:
		return obj{"type": "enum", "name": enumName(f.Name), "symbols": f.Symbols}
	default:
		return string(f.Type)
	}
}

func fieldDoc(f *catalog.Field) obj {
	d := obj{"name": f.Name, "doc": f.Title}
	if f.Required {
		d["type"] = fieldType(f)
	} else {
		d["type"] = []any{"null", fieldType(f)}
		d["default"] = nil
	}
	return d
}

// enumName makes an Avro type name from a field name: registered_status -> RegisteredStatus.
func enumName(field string) string {
	var b strings.Builder
	for _, part := range strings.Split(field, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// ParseAvro parses an Avro schema with a cache of its own. hamba/avro's
// Parse shares one global cache of named types and copies all of it on every
// parse, which makes parsing N schemas cost O(N²) (minutes for a city's
// 10,000 items) and lets one schema's names leak into another's.
func ParseAvro(text string) (avro.Schema, error) {
	return avro.ParseWithCache(text, "", &avro.SchemaCache{})
}
