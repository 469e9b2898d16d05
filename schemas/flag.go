package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
)

// The headers of the records of an item's topic that concern disputes.
const (
	// HeaderDisputes names, comma-separated, the open disputes of the record
	// a change is of, when it passed the door (on an item's topic) or when
	// the bus projected it (on a grant's feed).
	HeaderDisputes = "jutong.disputes"
	// HeaderKind marked the legacy flag records (KindFlag), written onto
	// items' topics by releases before the flags topics; readers pass them.
	HeaderKind = "jutong.kind"
	// KindFlag is HeaderKind's value on a legacy flag record.
	KindFlag = "flag"
)

// Flag is a change of a record's flag: its open disputes, from now on. It is
// the value of a flags topic's records (topicname.Flags), Avro under
// FlagSchema in the Confluent wire format, keyed by Key, so that the
// compacted topic keeps each record's latest flag.
type Flag struct {
	Item string `avro:"item" json:"item"`
	// Key is the record's business key as the topic shows it: on a grant's
	// feed that masks the key, its pseudonym.
	Key string `avro:"key" json:"key"`
	// Disputes are open from now on; empty when the last one closed.
	Disputes []string `avro:"disputes" json:"disputes"`
	// Fields are the fields the open disputes question (on a feed, those
	// the grant delivers).
	Fields []string  `avro:"fields" json:"fields,omitempty"`
	At     time.Time `avro:"at" json:"at"`
}

// FlagSchema is the Avro schema of Flag, registered under every flags
// topic's subject (<topic>-value).
const FlagSchema = `{
  "type": "record", "name": "Flag", "namespace": "jutong",
  "doc": "A change of a shared record's dispute flag: its open disputes from now on (none: the flag is cleared). Keyed by the record's business key, as the flagged topic shows it.",
  "fields": [
    {"name": "item", "type": "string", "doc": "the catalog item"},
    {"name": "key", "type": "string", "doc": "the record's business key (a pseudonym on a feed that masks it)"},
    {"name": "disputes", "type": {"type": "array", "items": "string"}, "doc": "the open disputes' ids; empty: none any more"},
    {"name": "fields", "type": {"type": "array", "items": "string"}, "default": [], "doc": "the fields the open disputes question"},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "when the flag changed"}
  ]
}`

// flagSchema parses FlagSchema once.
var flagSchema = sync.OnceValue(func() avro.Schema { return avro.MustParse(FlagSchema) })

// Encode returns the flag's Avro binary (without framing).
func (f Flag) Encode() []byte {
	if f.Disputes == nil {
		f.Disputes = []string{}
	}
	if f.Fields == nil {
		f.Fields = []string{}
	}
	f.At = f.At.UTC().Truncate(time.Millisecond)
	b, err := avro.Marshal(flagSchema(), f)
	if err != nil {
		panic("schemas: encode a flag: " + err.Error()) // strings and a time: cannot fail
	}
	return b
}

// DecodeFlag reads a flags topic's record value (Confluent-framed Avro);
// its schema id is not checked, as there is one flag schema.
func DecodeFlag(value []byte) (Flag, error) {
	_, payload, err := Unframe(value)
	if err != nil {
		return Flag{}, err
	}
	var f Flag
	if err := avro.Unmarshal(flagSchema(), payload, &f); err != nil {
		return Flag{}, fmt.Errorf("schemas: decode a flag: %w", err)
	}
	if f.Item == "" || f.Key == "" {
		return Flag{}, errors.New("schemas: a flag without item or key")
	}
	return f, nil
}

// LegacyFlagKey is the Kafka key of a record's legacy flag records on its
// item's topic: the business key and "\x00flag" (no business key holds NUL),
// so that a compacted topic kept a record's latest change and its latest
// flag apart. An upgrade writes tombstones under it (docs/upgrading.md).
func LegacyFlagKey(key string) []byte { return []byte(key + legacyFlagKeySuffix) }

const legacyFlagKeySuffix = "\x00flag"

// LegacyFlagBusinessKey is the business key a legacy flag record's Kafka key
// is of; ok is false for other keys.
func LegacyFlagBusinessKey(k []byte) (string, bool) {
	return strings.CutSuffix(string(k), legacyFlagKeySuffix)
}

// IsLegacyFlag says whether a header marks a legacy flag record.
func IsLegacyFlag(headerKey string, headerValue []byte) bool {
	return headerKey == HeaderKind && string(headerValue) == KindFlag
}

// ParseLegacyFlag reads a legacy flag record's value (JSON).
func ParseLegacyFlag(v []byte) (Flag, error) {
	var f Flag
	if err := json.Unmarshal(v, &f); err != nil {
		return Flag{}, err
	}
	if f.Item == "" || f.Key == "" {
		return Flag{}, errors.New("schemas: a flag record without item or key")
	}
	return f, nil
}

// SplitDisputes reads a HeaderDisputes value.
func SplitDisputes(v []byte) []string {
	if len(v) == 0 {
		return nil
	}
	return strings.Split(string(v), ",")
}
