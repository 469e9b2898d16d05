package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSampleCoversTheDomain(t *testing.T) {
	c, err := Sample()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Departments) < 8 || len(c.Items) < 20 || len(c.Themes) < 3 {
		t.Fatalf("%d departments, %d items, %d themes: want at least 8, 20, 3", len(c.Departments), len(c.Items), len(c.Themes))
	}
	bases, shares, grades := map[string]int{}, map[ShareType]int{}, map[int]int{}
	for _, it := range c.Items {
		bases[it.Base]++
		shares[it.Share]++
		for _, f := range it.Fields {
			grades[f.Grade]++
		}
		if tc := c.TopicConfig(it); tc.Partitions < 1 || tc.ReplicationFactor < 1 {
			t.Errorf("%s: topic config %+v", it.Code, tc)
		}
	}
	for _, b := range c.Bases {
		if bases[b.Code] == 0 {
			t.Errorf("no item in base database %s", b.Code)
		}
	}
	for _, s := range []ShareType{ShareUnconditional, ShareConditional, ShareNone} {
		if shares[s] == 0 {
			t.Errorf("share type %s unused", s)
		}
	}
	for g := 1; g <= 4; g++ {
		if grades[g] == 0 {
			t.Errorf("grade %d unused", g)
		}
	}
	it := c.Item("legal_person.enterprise_registration")
	if it == nil || it.KeyField().Name != "uscc" || c.Department(it.Source) == nil {
		t.Fatalf("enterprise registration: %+v", it)
	}
	if th := it.Themes(); len(th) < 2 {
		t.Fatalf("enterprise registration used by themes %v, want financing and business environment", th)
	}
}

// TestBrokenFixtures: every catalog under testdata/broken is refused with
// the message in its want.txt (file, item and field named).
func TestBrokenFixtures(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join("testdata", "broken", "*"))
	if len(dirs) < 8 {
		t.Fatalf("only %d broken fixtures", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, "want.txt"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(os.DirFS(dir))
			if err == nil {
				t.Fatal("loaded a broken catalog")
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

// TestValidFixture: the catalog the broken fixtures are made from is valid,
// so each broken one fails for its own reason.
func TestValidFixture(t *testing.T) {
	c, err := Load(os.DirFS(filepath.Join("testdata", "valid")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Item("legal_person.penalty") == nil || c.Theme("theme_credit") == nil {
		t.Fatal("fixture content missing")
	}
}
