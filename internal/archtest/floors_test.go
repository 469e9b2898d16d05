package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/jutong/jutong/"

// floor is where a package stands (docs/layout.md): the shared model, the
// SDKs, the pipeline, the bus's server side, the application. Imports run
// down or across, never up. Helpers under internal/ (not internal/app)
// stand where their own imports put them: a helper that imports the
// pipeline is of the pipeline's floor, and a package below it may not
// import it.
func floor(pkg string) (int, bool) {
	p := strings.TrimPrefix(pkg, module)
	switch {
	case p == "schemas" || p == "connect" || strings.HasPrefix(p, "model/"):
		return 0, true
	case p == "producers" || strings.HasPrefix(p, "producers/") || p == "consumers":
		return 1, true
	case p == "pipeline" || strings.HasPrefix(p, "pipeline/"):
		return 2, true
	case strings.HasPrefix(p, "server/"):
		return 3, true
	case strings.HasPrefix(p, "internal/app/") || strings.HasPrefix(p, "cmd/") || p == "clients" || p == "dashboards":
		return 4, true
	}
	return 0, false // a helper: where its imports put it
}

type listed struct {
	ImportPath string
	Imports    []string
}

func TestNoImportRunsUp(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		for _, q := range p.Imports {
			if strings.HasPrefix(q, module) {
				imports[p.ImportPath] = append(imports[p.ImportPath], q)
			}
		}
		if _, ok := imports[p.ImportPath]; !ok {
			imports[p.ImportPath] = nil
		}
	}
	// A helper's floor: the highest of what it imports, transitively.
	memo := map[string]int{}
	var level func(p string, seen map[string]bool) int
	level = func(p string, seen map[string]bool) int {
		if f, ok := floor(p); ok {
			return f
		}
		if f, ok := memo[p]; ok {
			return f
		}
		if seen[p] {
			return 0
		}
		seen[p] = true
		f := 0
		for _, q := range imports[p] {
			f = max(f, level(q, seen))
		}
		memo[p] = f
		return f
	}
	checked := 0
	for p, qs := range imports {
		fp, declared := floor(p)
		if !declared {
			continue
		}
		for _, q := range qs {
			checked++
			if fq := level(q, map[string]bool{}); fq > fp {
				t.Errorf("%s (floor %d) imports %s (floor %d): an import runs up", strings.TrimPrefix(p, module), fp, strings.TrimPrefix(q, module), fq)
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d imports checked: the listing is not what it was", checked)
	}
}
