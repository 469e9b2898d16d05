package open

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/jutong/jutong/model/catalog"
)

// aggregates count a release's rows by the item's OpenAggregates, on the
// values as released.
type aggregates struct {
	defs   []catalog.OpenAggregate
	idx    [][]int          // per aggregate, the released columns it groups by
	counts []map[string]int // per aggregate, by the group's values joined
	groups []map[string][]string
}

func newAggregates(it *catalog.Item, names []string) *aggregates {
	a := &aggregates{defs: it.OpenAggregates}
	for _, d := range a.defs {
		var idx []int
		for _, g := range d.GroupBy {
			idx = append(idx, slices.Index(names, g)) // catalog check: every group-by field is released
		}
		a.idx = append(a.idx, idx)
		a.counts = append(a.counts, map[string]int{})
		a.groups = append(a.groups, map[string][]string{})
	}
	return a
}

func (a *aggregates) add(row []*string) {
	for i, idx := range a.idx {
		vals := make([]string, len(idx))
		for j, c := range idx {
			if c >= 0 && row[c] != nil {
				vals[j] = *row[c]
			}
		}
		k := strings.Join(vals, "\x00")
		if a.counts[i][k] == 0 {
			a.groups[i][k] = vals
		}
		a.counts[i][k]++
	}
}

// write writes each aggregate as <release>.<name>.csv, a count below the
// aggregate's minimum released as "<min" (suppressed), and adds it to files.
func (a *aggregates) write(dir, id string, files map[string]File) error {
	for i, d := range a.defs {
		file, err := writeCSV(dir, id+"."+d.Name+".csv", func(w *csv.Writer) {
			_ = w.Write(append(slices.Clone(d.GroupBy), "count"))
			keys := make([]string, 0, len(a.counts[i]))
			for k := range a.counts[i] {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				n := strconv.Itoa(a.counts[i][k])
				if a.counts[i][k] < d.MinCount {
					n = "<" + strconv.Itoa(d.MinCount)
				}
				_ = w.Write(append(slices.Clone(a.groups[i][k]), n))
			}
		})
		if err != nil {
			return err
		}
		files[d.Name+".csv"] = file
	}
	return nil
}

// writeCSV writes dir/name with fill, and returns it with its size and
// SHA-256.
func writeCSV(dir, name string, fill func(*csv.Writer)) (File, error) {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return File{}, err
	}
	hc := &hashCount{h: sha256.New()}
	w := csv.NewWriter(io.MultiWriter(f, hc))
	fill(w)
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return File{}, err
	}
	if err := f.Close(); err != nil {
		return File{}, err
	}
	return File{Name: name, Size: hc.n, SHA256: hex.EncodeToString(hc.h.Sum(nil))}, nil
}
