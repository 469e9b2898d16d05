package ident

import (
	_ "embed"
	"strings"
	"sync"
)

// divisionsTSV is the shipped list of GB/T 2260 codes (data/divisions.tsv:
// its header names the sources and their dates; scripts/gb2260.py builds
// it): every code listed by a revision from 2002-12 to 2023-06, with its
// name and the first and last revision listing it.
//
//go:embed data/divisions.tsv
var divisionsTSV string

// DivisionsAsOf is the last revision of the shipped list (YYYYMM).
const DivisionsAsOf = "202306"

// Division is one code of the shipped list.
type Division struct {
	Code, Name  string
	First, Last string // the first and last revision listing it (YYYYMM)
}

// Current says whether the latest revision lists it.
func (d Division) Current() bool { return d.Last == DivisionsAsOf }

// divisions parses the list once; it is read-only after.
var divisions = sync.OnceValue(func() map[string]Division {
	m := make(map[string]Division, 4200)
	for _, line := range strings.Split(divisionsTSV, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) == 4 {
			m[f[0]] = Division{Code: f[0], Name: f[1], First: f[2], Last: f[3]}
		}
	}
	return m
})

// LookupDivision finds a code in the shipped list: one that exists, or
// existed at some revision since 2002-12.
func LookupDivision(code string) (Division, bool) {
	d, ok := divisions()[code]
	return d, ok
}
