package rules

import (
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// CheckJSONText refuses, under the rule text.utf8, a JSON text whose strings
// would not arrive as sent: bytes that are not UTF-8, and \u escapes of a
// lone UTF-16 surrogate (\ud800 with no low surrogate after it, or a low
// one alone), which no character is. Go's JSON decoder would otherwise
// replace both with U+FFFD, silently. The field is named when it can be
// told (the last object key before the fault); line numbers the text in
// its request or file (0: none).
func CheckJSONText(line int, raw []byte) *Violation {
	where := ""
	if line > 0 {
		where = fmt.Sprintf("line %d ", line)
	}
	if !utf8.Valid(raw) {
		at := invalidAt(raw)
		return &Violation{Field: fieldBefore(raw, at), Rule: TextUTF8, Reason: fmt.Sprintf("%sis not valid UTF-8 at byte %d", where, at)}
	}
	if at, esc, ok := loneSurrogate(raw); ok {
		return &Violation{Field: fieldBefore(raw, at), Rule: TextUTF8,
			Reason: fmt.Sprintf("%sholds the escape %s at byte %d: a lone UTF-16 surrogate is no character (a pair \\uD83D\\uDE00 is)", where, esc, at)}
	}
	return nil
}

// loneSurrogate finds the first \u escape, inside a JSON string, of a
// surrogate that is not half of a high-low pair.
func loneSurrogate(raw []byte) (at int, esc string, found bool) {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 < len(raw) && raw[i+1] == 'u' {
				r, ok := hex4(raw, i+2)
				switch {
				case !ok:
				case utf16.IsSurrogate(r) && r < 0xdc00: // high: a low must follow
					if i+7 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
						if lo, ok := hex4(raw, i+8); ok && lo >= 0xdc00 && lo <= 0xdfff {
							i += 11
							continue
						}
					}
					return i, string(raw[i : i+6]), true
				case utf16.IsSurrogate(r): // low, alone
					return i, string(raw[i : i+6]), true
				}
				i += 5
				continue
			}
			i++ // the escaped character
		}
	}
	return 0, "", false
}

// hex4 reads the four hex digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(raw[i:i+4]), 16, 16)
	return rune(n), err == nil
}

// fieldBefore is the last JSON object key before byte at ("" for none).
func fieldBefore(raw []byte, at int) string {
	if m := lastKey.FindAllSubmatch(raw[:at], -1); len(m) > 0 {
		return string(m[len(m)-1][1])
	}
	return ""
}

// lastKey finds JSON object keys ("name":).
var lastKey = regexp.MustCompile(`"([A-Za-z_][A-Za-z0-9_]*)"\s*:`)
