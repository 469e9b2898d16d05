package schemas

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jutong/jutong/model/catalog"
)

// JSONValues renders an event's data with exact, portable values: decimals as
// strings at the field's scale, dates as YYYY-MM-DD, timestamps as RFC 3339
// with milliseconds in UTC. Fields are in catalog order.
func JSONValues(it *catalog.Item, data map[string]any) ([]byte, error) {
	if data == nil {
		return nil, nil
	}
	return AppendJSONValues(make([]byte, 0, 64*len(it.Fields)), it, data)
}

// AppendJSONValues appends what JSONValues returns to buf, byte for byte
// what encoding/json writes, without its reflection (the ClickHouse sink
// renders every record).
func AppendJSONValues(buf []byte, it *catalog.Item, data map[string]any) ([]byte, error) {
	if data == nil {
		return buf, nil
	}
	buf = append(buf, '{')
	for i, f := range it.Fields {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, f.Name)
		buf = append(buf, ':')
		switch x := data[f.Name].(type) {
		case nil:
			buf = append(buf, "null"...)
		case string:
			buf = appendJSONString(buf, x)
		case int64:
			buf = strconv.AppendInt(buf, x, 10)
		case int:
			buf = strconv.AppendInt(buf, int64(x), 10)
		case bool:
			buf = strconv.AppendBool(buf, x)
		case *big.Rat:
			buf = appendJSONString(buf, x.FloatString(f.Scale))
		case time.Time:
			if f.Type == catalog.TypeDate {
				buf = append(buf, '"')
				buf = x.UTC().AppendFormat(buf, time.DateOnly)
				buf = append(buf, '"')
			} else {
				buf = append(buf, '"')
				buf = x.UTC().AppendFormat(buf, "2006-01-02T15:04:05.000Z")
				buf = append(buf, '"')
			}
		default: // floats and anything else: exactly as encoding/json
			v, err := json.Marshal(x)
			if err != nil {
				return nil, err
			}
			buf = append(buf, v...)
		}
	}
	return append(buf, '}'), nil
}

// AppendJSONString appends s quoted as encoding/json quotes it.
func AppendJSONString(buf []byte, s string) []byte { return appendJSONString(buf, s) }

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does (HTML-safe, with U+2028
// and U+2029 escaped and invalid UTF-8 replaced).
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, "\\ufffd"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// PortableRecord converts a record's values to JSON-friendly exact forms,
// keeping as text what JSON cannot carry (what the quarantine keeps of a
// refused record: as it was given, whatever its types).
func PortableRecord(it *catalog.Item, data map[string]any) map[string]any {
	out := make(map[string]any, len(data))
	for k, val := range data {
		if f := it.Field(k); f != nil {
			val = PortableValue(f, val)
		}
		if _, err := json.Marshal(val); err != nil {
			val = fmt.Sprintf("%v", val)
		}
		out[k] = val
	}
	return out
}

// PortableValue converts one field value to a JSON-friendly exact form.
func PortableValue(f *catalog.Field, v any) any {
	switch x := v.(type) {
	case *big.Rat:
		return x.FloatString(f.Scale)
	case time.Time:
		if f.Type == catalog.TypeDate {
			return x.UTC().Format(time.DateOnly)
		}
		return x.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return v
}

// FieldError says which field of a JSON record could not take its value.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Reason }

// FromJSON converts a record decoded from JSON (with json.Decoder.UseNumber)
// to the typed values the item's schema takes: decimals from strings or
// numbers (exactly), dates from YYYY-MM-DD, timestamps from RFC 3339, longs
// from integers. Unknown fields are kept as they are, for the contract to
// refuse; a value of the wrong form is a *FieldError.
func FromJSON(it *catalog.Item, rec map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(rec))
	for k, v := range rec {
		f := it.Field(k)
		if f == nil || v == nil {
			out[k] = v
			continue
		}
		tv, err := fromJSON(f, v)
		if err != nil {
			return nil, &FieldError{Field: k, Reason: err.Error()}
		}
		out[k] = tv
	}
	return out, nil
}

func fromJSON(f *catalog.Field, v any) (any, error) {
	wrong := func(want string) error { return fmt.Errorf("want %s, got %s", want, jsonKind(v)) }
	switch f.Type {
	case catalog.TypeString, catalog.TypeEnum:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return nil, wrong("a string")
	case catalog.TypeBoolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, wrong("true or false")
	case catalog.TypeLong:
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				return i, nil
			}
		}
		return nil, wrong("an integer")
	case catalog.TypeDouble:
		if n, ok := v.(json.Number); ok {
			if x, err := n.Float64(); err == nil {
				return x, nil
			}
		}
		return nil, wrong("a number")
	case catalog.TypeDecimal:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		default:
			return nil, wrong("a decimal as a string or number")
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return nil, fmt.Errorf("%q is not a decimal number", s)
		}
		return r, nil
	case catalog.TypeDate:
		s, ok := v.(string)
		if !ok {
			return nil, wrong("a date YYYY-MM-DD")
		}
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a date YYYY-MM-DD", s)
		}
		return t, nil
	case catalog.TypeTimestamp:
		s, ok := v.(string)
		if !ok {
			return nil, wrong("an RFC 3339 timestamp")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an RFC 3339 timestamp", s)
		}
		return t.UTC().Truncate(time.Millisecond), nil
	}
	return v, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

// FromText converts one field's value given as text (a CSV cell, a SQL
// column read as text) to the typed value of the field. Empty text is an
// absent value (nil). Booleans take true/false/t/f/1/0; dates YYYY-MM-DD
// (or a timestamp at midnight); timestamps RFC 3339 or "YYYY-MM-DD hh:mm:ss[.fff]"
// (UTC). A value of the wrong form is a *FieldError.
func FromText(f *catalog.Field, s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	bad := func(want string) error {
		return &FieldError{Field: f.Name, Reason: fmt.Sprintf("%q is not %s", s, want)}
	}
	switch f.Type {
	case catalog.TypeString, catalog.TypeEnum:
		return s, nil
	case catalog.TypeLong:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, bad("an integer")
		}
		return n, nil
	case catalog.TypeDouble:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, bad("a number")
		}
		return x, nil
	case catalog.TypeBoolean:
		switch strings.ToLower(s) {
		case "true", "t", "1", "yes", "y":
			return true, nil
		case "false", "f", "0", "no", "n":
			return false, nil
		}
		return nil, bad("a boolean")
	case catalog.TypeDecimal:
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return nil, bad("a decimal number")
		}
		return r, nil
	case catalog.TypeDate:
		if t, err := time.Parse(time.DateOnly, s); err == nil {
			return t, nil
		}
		if t, ok := parseTimestamp(s); ok && t.Equal(t.Truncate(24*time.Hour)) {
			return t, nil
		}
		return nil, bad("a date YYYY-MM-DD")
	case catalog.TypeTimestamp:
		if t, ok := parseTimestamp(s); ok {
			return t, nil
		}
		return nil, bad("a timestamp (RFC 3339, or YYYY-MM-DD hh:mm:ss in UTC)")
	}
	return s, nil
}

func parseTimestamp(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Truncate(time.Millisecond), true
		}
	}
	return time.Time{}, false
}
