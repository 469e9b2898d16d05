package schemas

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// The headers of the records on an item's topic that are not change events
// of the item, and of the changes of a disputed record.
const (
	// HeaderKind marks a record that is not a change event: its value is
	// not Avro. Readers of an item's topic pass such records (the sinks)
	// or hand them to their own callback (the subscriber SDK).
	HeaderKind = "jutong.kind"
	// KindFlag is a dispute flag record: a record's open disputes changed.
	KindFlag = "flag"
	// HeaderDisputes names, comma-separated, the open disputes of the record
	// a change is of, when it passed the door (on an item's topic) or when
	// the bus projected it (on a grant's feed); on a flag record, the
	// disputes open from now on (empty: none any more).
	HeaderDisputes = "jutong.disputes"
)

// Flag is the value of a dispute flag record on an item's topic (JSON): the
// record's open disputes changed. It is keyed by FlagKey(Key) and written to
// the partition of Key, so that it is ordered with the record's changes.
type Flag struct {
	Item     string    `json:"item"`
	Key      string    `json:"key"`
	Disputes []string  `json:"disputes"` // open from now on; empty when the last one closed
	At       time.Time `json:"at"`
}

// flagKeySuffix tells a flag record's key from a business key: the door
// refuses NUL in every text, so no business key holds it, and a compacted
// topic keeps a record's latest change and its latest flag apart.
const flagKeySuffix = "\x00flag"

// FlagKey is the Kafka key of a record's flag records.
func FlagKey(key string) []byte { return []byte(key + flagKeySuffix) }

// FlagBusinessKey is the business key a flag record's Kafka key is of (to
// partition it with the record's changes); ok is false for other keys.
func FlagBusinessKey(k []byte) (string, bool) {
	return strings.CutSuffix(string(k), flagKeySuffix)
}

// IsFlag says whether a header marks a dispute flag record.
func IsFlag(headerKey string, headerValue []byte) bool {
	return headerKey == HeaderKind && string(headerValue) == KindFlag
}

// JSON is the flag record's value.
func (f Flag) JSON() []byte {
	if f.Disputes == nil {
		f.Disputes = []string{}
	}
	b, _ := json.Marshal(f) // strings and a time: cannot fail
	return b
}

// ParseFlag reads a flag record's value.
func ParseFlag(v []byte) (Flag, error) {
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
