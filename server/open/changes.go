package open

import (
	"bufio"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ChangesFile is the format key of a release's changes since the previous
// one (items with open_history).
const ChangesFile = "changes.csv"

// writeChanges writes <release>.changes.csv: the rows of rel's CSV that
// prev lacks ("added") and those of prev that rel lacks ("removed"), as
// released (a changed row is one removed and one added). It is computed
// from the two releases, so it holds nothing they do not.
func writeChanges(dir string, prev, rel *Release) error {
	if !slices.Equal(prev.Fields, rel.Fields) {
		return nil // the released columns changed: no row compares
	}
	read := func(r *Release) (map[string]int, [][]string, error) {
		f, err := os.Open(filepath.Join(dir, r.Files["csv"].Name))
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		br := bufio.NewReader(f)
		if b, _ := br.Peek(3); string(b) == "\uFEFF" {
			_, _ = br.Discard(3)
		}
		cr := csv.NewReader(br)
		if _, err := cr.Read(); err != nil { // the header
			return nil, nil, err
		}
		count := map[string]int{}
		var rows [][]string
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				return count, rows, nil
			}
			if err != nil {
				return nil, nil, err
			}
			count[strings.Join(rec, "\x00")]++
			rows = append(rows, rec)
		}
	}
	before, oldRows, err := read(prev)
	if err != nil {
		return err
	}
	after, newRows, err := read(rel)
	if err != nil {
		return err
	}
	file, err := writeCSV(dir, rel.ID+"."+ChangesFile, func(w *csv.Writer) {
		_ = w.Write(append([]string{"change"}, rel.Fields...))
		emit := func(change string, rows [][]string, other, seen map[string]int) {
			for _, rec := range rows {
				k := strings.Join(rec, "\x00")
				if seen[k] < other[k] {
					seen[k]++ // the same row in both: no change
					continue
				}
				_ = w.Write(append([]string{change}, rec...))
			}
		}
		emit("removed", oldRows, after, map[string]int{})
		emit("added", newRows, before, map[string]int{})
	})
	if err != nil {
		return err
	}
	rel.Files[ChangesFile] = file
	return nil
}
