package field

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Every text rule's example passes its check, its corruption fails it, and
// its mask keeps what it says.
func TestEveryRule(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 2))
	for _, name := range Names() {
		rule, ok := Lookup(name)
		if !ok || rule.Doc == "" {
			t.Fatalf("%s: %+v", name, rule)
		}
		switch rule.Kind {
		case Text:
			for range 50 {
				v := rule.Example(r, "500103", now)
				if bad, why, ok := rule.CheckText(v, now); !ok {
					t.Fatalf("%s: the example %q fails: %s %s", name, v, bad, why)
				}
				if rule.Corrupt != nil {
					if _, _, ok := rule.CheckText(rule.Corrupt(v), now); ok {
						t.Fatalf("%s: the corrupted %q passes", name, rule.Corrupt(v))
					}
				}
				if rule.Mask != nil {
					m, ok := rule.Mask(v)
					if !ok || len(m) != len(v) || m == v || rule.MaskDoc == "" {
						t.Fatalf("%s: %q masks as %q", name, v, m)
					}
				}
			}
		case Time:
			if _, _, ok := rule.CheckTime(now.Add(time.Hour), now); ok {
				t.Errorf("%s: an hour ahead passes", name)
			}
			if _, _, ok := rule.CheckTime(now, now); !ok {
				t.Errorf("%s: now fails", name)
			}
		}
	}
	if _, ok := Lookup("nonsense"); ok {
		t.Error("an unknown rule was found")
	}
	if m, _ := mustLookup(t, CitizenID).Mask("500103199003071234"); m != "500103********1234" {
		t.Errorf("citizen id masked as %q", m)
	}
	if m, _ := mustLookup(t, USCC).Mask("91500103MA5U7CQ96X"); m != "91500103**********" {
		t.Errorf("credit code masked as %q", m)
	}
}

func mustLookup(t *testing.T, name string) Rule {
	r, ok := Lookup(name)
	if !ok {
		t.Fatal(name)
	}
	return r
}
