package ident

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Error says which rule an identifier broke.
type Error struct {
	Rule   string // e.g. "uscc.checksum", "citizen_id.birth_date"
	Value  string
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %q %s", e.Rule, e.Value, e.Reason) }

var citizenWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

const citizenCheck = "10X98765432"

// CitizenIDCheckChar computes the GB 11643 check character of the first 17
// digits of a citizen ID number.
func CitizenIDCheckChar(first17 string) (byte, error) {
	if len(first17) != 17 {
		return 0, &Error{"citizen_id.length", first17, "needs 17 digits before the check character"}
	}
	sum := 0
	for i := 0; i < 17; i++ {
		c := first17[i]
		if c < '0' || c > '9' {
			return 0, &Error{"citizen_id.digits", first17, fmt.Sprintf("has non-digit %q at position %d", c, i+1)}
		}
		sum += int(c-'0') * citizenWeights[i]
	}
	return citizenCheck[sum%11], nil
}

// CheckCitizenID checks an 18-character citizen ID number: length, digits,
// division code, a real birth date not in the future, and the check character.
func CheckCitizenID(id string, now time.Time) error {
	if len(id) != 18 {
		return &Error{"citizen_id.length", id, fmt.Sprintf("has %d characters, want 18", len(id))}
	}
	want, err := CitizenIDCheckChar(id[:17])
	if err != nil {
		return err
	}
	if err := checkDivisionForm(id[:6]); err != nil {
		return &Error{"citizen_id.division", id, "does not start with a valid division code"}
	}
	if !issuedIn(id[:6]) {
		return &Error{"citizen_id.division", id, fmt.Sprintf("starts with %s, which is no GB/T 2260 code, nor a county of a known prefecture (the shipped list, 2002-12 to %s)", id[:6], DivisionsAsOf)}
	}
	if birth, ok := parseDate(id[6:14]); !ok || birth.Year() < 1880 || birth.After(now) {
		return &Error{"citizen_id.birth_date", id, fmt.Sprintf("has no real birth date (%s)", id[6:14])}
	}
	if got := id[17]; got != want && !(want == 'X' && got == 'x') {
		return &Error{"citizen_id.checksum", id, fmt.Sprintf("has check character %q, want %q", got, want)}
	}
	return nil
}

// parseDate reads YYYYMMDD (digits already checked) and reports whether it
// is a real calendar day; it does what time.Parse would, without allocating.
func parseDate(s string) (time.Time, bool) {
	n := func(a, b int) int {
		v := 0
		for i := a; i < b; i++ {
			v = v*10 + int(s[i]-'0')
		}
		return v
	}
	y, m, d := n(0, 4), n(4, 6), n(6, 8)
	if m < 1 || m > 12 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	return t, t.Day() == d // 0230 normalises to March
}

// USCCAlphabet is the GB 32100 character set: digits and capitals without I O Z S V.
const USCCAlphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"

var usccWeights = [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}

// USCCCheckChar computes the GB 32100 check character of the first 17
// characters of a unified social credit code.
func USCCCheckChar(first17 string) (byte, error) {
	if len(first17) != 17 {
		return 0, &Error{"uscc.length", first17, "needs 17 characters before the check character"}
	}
	sum := 0
	for i := 0; i < 17; i++ {
		v := strings.IndexByte(USCCAlphabet, first17[i])
		if v < 0 {
			return 0, &Error{"uscc.charset", first17, fmt.Sprintf("has %q at position %d, not in %s", first17[i], i+1, USCCAlphabet)}
		}
		sum += v * usccWeights[i]
	}
	c := 31 - sum%31
	if c == 31 {
		c = 0
	}
	return USCCAlphabet[c], nil
}

// CheckUSCC checks an 18-character unified social credit code: length,
// character set, the embedded division code and the check character.
func CheckUSCC(code string) error {
	if len(code) != 18 {
		return &Error{"uscc.length", code, fmt.Sprintf("has %d characters, want 18", len(code))}
	}
	want, err := USCCCheckChar(code[:17])
	if err != nil {
		return err
	}
	if strings.IndexByte(USCCAlphabet, code[17]) < 0 {
		return &Error{"uscc.charset", code, fmt.Sprintf("has %q at position 18, not in %s", code[17], USCCAlphabet)}
	}
	if err := CheckDivision(code[2:8]); err != nil {
		return &Error{"uscc.division", code, fmt.Sprintf("has no GB/T 2260 division code at positions 3-8 (%s: %v)", code[2:8], err.(*Error).Reason)}
	}
	if code[17] != want {
		return &Error{"uscc.checksum", code, fmt.Sprintf("has check character %q, want %q", code[17], want)}
	}
	return nil
}

// CheckDivision checks a GB/T 2260 administrative division code: six
// digits, a province part from 11 to 82, and a code that exists or existed
// (the shipped list, LookupDivision: a record may name a division since
// merged or renamed; a code that never existed is refused).
func CheckDivision(code string) error {
	if err := checkDivisionForm(code); err != nil {
		return err
	}
	if _, ok := LookupDivision(code); !ok {
		return &Error{"division.unknown", code, fmt.Sprintf("is no GB/T 2260 code: no revision from 2002-12 to %s lists it", DivisionsAsOf)}
	}
	return nil
}

// issuedIn says whether a citizen ID may have been issued in division:
// a code of the list, or a county code of a prefecture of the list. IDs
// are older than the shipped history (2002-12 on): a county abolished
// before then is still a county of its prefecture, which the list knows.
func issuedIn(division string) bool {
	if _, ok := LookupDivision(division); ok {
		return true
	}
	_, ok := LookupDivision(division[:4] + "00")
	return ok
}

// checkDivisionForm checks a division code's form only.
func checkDivisionForm(code string) error {
	if len(code) != 6 {
		return &Error{"division.length", code, fmt.Sprintf("has %d characters, want 6", len(code))}
	}
	for i := 0; i < 6; i++ {
		if code[i] < '0' || code[i] > '9' {
			return &Error{"division.digits", code, "must be 6 digits"}
		}
	}
	if p := int(code[0]-'0')*10 + int(code[1]-'0'); p < 11 || p > 82 {
		return &Error{"division.province", code, fmt.Sprintf("province part %02d is not a GB/T 2260 province", p)}
	}
	return nil
}

// ChongqingDivisions are real GB/T 2260 codes of Chongqing's districts and
// counties, used by the synthetic departments.
var ChongqingDivisions = []string{
	"500101", "500102", "500103", "500104", "500105", "500106", "500107", "500108",
	"500109", "500110", "500111", "500112", "500113", "500114", "500115", "500116",
	"500117", "500118", "500119", "500120", "500151", "500152", "500153", "500154",
	"500155", "500156", "500229", "500230", "500231", "500233", "500235", "500236",
	"500237", "500238", "500240", "500241", "500242", "500243",
}

// NewUSCC generates a valid unified social credit code registered in division.
func NewUSCC(r *rand.Rand, division string) string {
	var b strings.Builder
	b.Grow(18)
	// Registration authority 9 (market supervision), organisation type 1 (enterprise)
	// for most; some 5x (social organisations) for variety.
	if r.IntN(10) == 0 {
		b.WriteString("51")
	} else {
		b.WriteString("91")
	}
	b.WriteString(division)
	for i := 0; i < 9; i++ {
		b.WriteByte(USCCAlphabet[r.IntN(len(USCCAlphabet))])
	}
	c, _ := USCCCheckChar(b.String())
	b.WriteByte(c)
	return b.String()
}

// NewCitizenID generates a valid citizen ID number for someone born on birth
// in division; male selects an odd sequence number.
func NewCitizenID(r *rand.Rand, division string, birth time.Time, male bool) string {
	seq := r.IntN(500) * 2
	if male {
		seq++
	}
	s := fmt.Sprintf("%s%s%03d", division, birth.Format("20060102"), seq)
	c, _ := CitizenIDCheckChar(s)
	return s + string(c)
}
