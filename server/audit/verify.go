package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// A Verifier walks the audit trail in offset order (Add each record, then
// Finish) and finds where it was changed, removed from or inserted into: a
// record whose successor carries another hash for it, a gap in a chain's
// sequence, two records for one place of a chain, a chain that does not
// begin with a signed ChainStart, a ChainStart after a record that is
// gone, a record after its chain's final head, a signature that does not
// verify.
type Verifier struct {
	pub     ed25519.PublicKey
	chains  map[string][]link
	order   []string         // chains in the order they began
	seen    map[string]int64 // record hash -> offset
	r       Report
	chained bool
}

// link is one record of a chain.
type link struct {
	offset   int64
	seq      int64
	hash     string
	e        Event
	signedOK bool
}

// Report is what Verify found.
type Report struct {
	Records int64 // records walked
	Legacy  int64 // records from before the chains (a prefix), not verifiable
	Chains  int   // writers' chains
	Heads   int64 // signed heads verified
	// Unsealed counts, by chain, the records after its last head: they are
	// chained, but a change to the last of them is not yet detectable.
	Unsealed map[string]int64
	// Problems are what was found, by offset: each names the record.
	Problems []Problem
}

// A Problem is one place where the trail was tampered with.
type Problem struct {
	Offset int64
	What   string
}

func (p Problem) String() string { return fmt.Sprintf("offset %d: %s", p.Offset, p.What) }

// OK says whether the trail verified.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// NewVerifier verifies signatures with pub, the bus's public key.
func NewVerifier(pub ed25519.PublicKey) *Verifier {
	return &Verifier{pub: pub, chains: map[string][]link{}, seen: map[string]int64{}, r: Report{Unsealed: map[string]int64{}}}
}

func (v *Verifier) problem(off int64, format string, args ...any) {
	v.r.Problems = append(v.r.Problems, Problem{Offset: off, What: fmt.Sprintf(format, args...)})
}

func (v *Verifier) verifySig(e *Event, after string) bool {
	sig, err := base64.StdEncoding.DecodeString(e.Sig)
	return err == nil && ed25519.Verify(v.pub, signed(e.Chain, e.Seq, e.Prev, after), sig)
}

// Add takes the record at offset, whose value is value.
func (v *Verifier) Add(offset int64, value []byte) {
	v.r.Records++
	h := Hash(value)
	var e Event
	if err := json.Unmarshal(value, &e); err != nil {
		v.problem(offset, "not an audit record (%v): changed or inserted", err)
		v.seen[h] = offset
		return
	}
	if e.Chain == "" {
		if v.chained {
			v.problem(offset, "a record on no chain after the chains began: inserted (kind %q, department %q)", e.Kind, e.Department)
		} else {
			v.r.Legacy++
		}
		v.seen[h] = offset
		return
	}
	v.chained = true
	l := link{offset: offset, seq: e.Seq, hash: h, e: e}
	switch e.Kind {
	case ChainStart:
		l.signedOK = v.verifySig(&e, e.After)
		if l.signedOK && e.After != "" {
			if _, ok := v.seen[e.After]; !ok {
				v.problem(offset, "chain %s began after a record (hash %.12s…) no longer in the trail before it: removed or changed", e.Chain, e.After)
			}
		}
	case ChainHead:
		l.signedOK = v.verifySig(&e, "")
	}
	if _, ok := v.chains[e.Chain]; !ok {
		v.order = append(v.order, e.Chain)
	}
	v.chains[e.Chain] = append(v.chains[e.Chain], l)
	v.seen[h] = offset
}

// Finish checks each chain and returns the report.
func (v *Verifier) Finish() Report {
	for _, id := range v.order {
		v.checkChain(id, v.chains[id])
	}
	v.r.Chains = len(v.order)
	sort.SliceStable(v.r.Problems, func(i, j int) bool { return v.r.Problems[i].Offset < v.r.Problems[j].Offset })
	return v.r
}

func (v *Verifier) checkChain(id string, links []link) {
	bySeq := map[int64][]link{}
	var top int64
	for _, l := range links {
		bySeq[l.seq] = append(bySeq[l.seq], l)
		top = max(top, l.seq)
	}
	// The genuine record of a place is the one its successor names.
	genuine := map[int64]link{}
	for s := top; s >= 0; s-- {
		cands := bySeq[s]
		if len(cands) == 0 {
			continue
		}
		pick := cands[0]
		if next, ok := genuine[s+1]; ok && len(cands) > 1 {
			for _, c := range cands {
				if c.hash == next.e.Prev {
					pick = c
				}
			}
		} else if len(cands) > 1 && s == top {
			// No successor to tell: the signed one, else the first.
			for _, c := range cands {
				if c.signedOK {
					pick = c
					break
				}
			}
		}
		genuine[s] = pick
		for _, c := range cands {
			if c.offset != pick.offset {
				v.problem(c.offset, "chain %s has two records for seq %d (the other at offset %d): inserted", id, s, pick.offset)
			}
		}
	}
	start, ok := genuine[0]
	switch {
	case !ok:
		v.problem(links[0].offset, "chain %s has no start: its first records were removed, or these were inserted", id)
	case start.e.Kind != ChainStart || start.e.Prev != "":
		v.problem(start.offset, "chain %s's first record is not a start: changed or inserted", id)
	case !start.signedOK:
		v.problem(start.offset, "chain %s's start is not signed by the bus's key: changed or inserted", id)
	}
	var sealed, final int64 = 0, -1
	for s := int64(1); s <= top; s++ {
		l, ok := genuine[s]
		if !ok {
			// report the gap once, at the record after it
			if _, had := genuine[s-1]; had {
				end := s
				for ; end <= top; end++ {
					if _, ok := genuine[end]; ok {
						break
					}
				}
				at := int64(-1)
				if n, ok := genuine[end]; ok {
					at = n.offset
				}
				if end-1 == s {
					v.problem(at, "chain %s lacks seq %d before this record: removed", id, s)
				} else {
					v.problem(at, "chain %s lacks seq %d to %d before this record: removed", id, s, end-1)
				}
			}
			continue
		}
		if p, ok := genuine[s-1]; ok && l.e.Prev != p.hash {
			v.problem(p.offset, "changed: the next record of chain %s (offset %d) carries another hash for this one", id, l.offset)
		}
		if l.e.Kind == ChainStart {
			v.problem(l.offset, "chain %s begins again at seq %d: inserted", id, s)
		}
		if final >= 0 {
			v.problem(l.offset, "chain %s goes on after its final head (offset %d): inserted", id, genuine[final].offset)
			final = -1
		}
		if l.e.Kind == ChainHead {
			if l.signedOK {
				v.r.Heads++
				sealed = s
				if l.e.Detail == finalDetail {
					final = s
				}
			} else {
				v.problem(l.offset, "chain %s's head at seq %d is not signed by the bus's key: changed or inserted", id, s)
			}
		}
	}
	if top > sealed {
		v.r.Unsealed[id] = top - sealed
	}
}

// String is the report for a person.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d records on %d chains, %d signed heads verified", r.Records, r.Chains, r.Heads)
	if r.Legacy > 0 {
		fmt.Fprintf(&b, "; %d earlier records on no chain (not verifiable)", r.Legacy)
	}
	var unsealed int64
	for _, n := range r.Unsealed {
		unsealed += n
	}
	if unsealed > 0 {
		fmt.Fprintf(&b, "; %d records after their chain's last head (sealed at the next head, within a minute)", unsealed)
	}
	if r.OK() {
		b.WriteString("\nOK: nothing changed, removed or inserted")
		return b.String()
	}
	fmt.Fprintf(&b, "\nTAMPERED: %d problem(s); the first:\n  %s", len(r.Problems), r.Problems[0])
	for _, p := range r.Problems[1:min(len(r.Problems), 10)] {
		fmt.Fprintf(&b, "\n  %s", p)
	}
	return b.String()
}
