// Package open is the open system (开放系统): the catalog's items whose open
// type allows it released to the public, de-identified by the catalog's
// rules (each field's open rule: clear up to grade 2, drop, mask, year,
// region), as files (CSV and JSON, a stable URL per release) refreshed from
// the base databases whenever the item changed; a CKAN-shaped Action API
// and DCAT metadata for harvesters; and the portal, the pages a person
// opens (portal.go). Every download is audited.
package open

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/pipeline/pgsink"
)

// Release is one refresh of an open item: its de-identified current state
// as of Positions (the base database's ledger of the item's topic).
type Release struct {
	Item      string          `json:"item"`
	ID        string          `json:"id"` // e.g. 20261203T101500Z
	Created   time.Time       `json:"created"`
	Rows      int             `json:"rows"`
	Positions map[int32]int64 `json:"positions"`
	Fields    []string        `json:"fields"` // the released columns
	Files     map[string]File `json:"files"`  // by format: csv, json
}

// File is one format of a release.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Open says whether the public may read an item's releases: its open type
// is unconditional (conditional items are listed, their data needs an
// approved key).
func Open(it *catalog.Item) bool { return it.Open == catalog.ShareUnconditional }

// Listed says whether an item is in the open catalog at all.
func Listed(it *catalog.Item) bool {
	return it.Open == catalog.ShareUnconditional || it.Open == catalog.ShareConditional
}

// Releaser makes and keeps the releases.
type Releaser struct {
	Catalog *catalog.Catalog
	DB      *pgxpool.Pool
	Sink    string // the PostgreSQL sink whose ledger says how current a table is
	Dir     string // <dir>/<item>/<release>.{csv,json,meta.json}
	Keep    int    // releases kept per item (3 when 0)
	Log     *slog.Logger
	Now     func() time.Time
	// Released, when set, is told of each release made (the bus audits it:
	// the open releases' scorecard).
	Released func(ctx context.Context, rel *Release)

	mu   sync.Mutex
	kept map[string][]*Release // by item, newest first: read from Dir once
}

// released is one field as released: its rule.
type released struct {
	f    *catalog.Field
	rule string
}

// Columns are an item's fields as released (the dropped ones left out).
func Columns(it *catalog.Item) []released {
	var out []released
	for _, f := range it.Fields {
		if r := f.OpenRule(); r != catalog.OpenDrop {
			out = append(out, released{f, r})
		}
	}
	return out
}

// Latest is an item's newest release (nil when none yet).
func (r *Releaser) Latest(item string) *Release {
	if rs := r.Releases(item); len(rs) > 0 {
		return rs[0]
	}
	return nil
}

// Releases lists an item's kept releases, newest first.
func (r *Releaser) Releases(item string) []*Release {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.load()
	return slices.Clone(r.kept[item])
}

// File is the path of a release's file, if it exists.
func (r *Releaser) File(item, id, format string) (string, *Release, bool) {
	for _, rel := range r.Releases(item) {
		if rel.ID == id {
			f, ok := rel.Files[format]
			return filepath.Join(r.Dir, item, f.Name), rel, ok
		}
	}
	return "", nil, false
}

// load reads the releases kept in Dir, once (r.mu held).
func (r *Releaser) load() {
	if r.kept != nil {
		return
	}
	r.kept = map[string][]*Release{}
	for _, it := range r.Catalog.Items {
		metas, _ := filepath.Glob(filepath.Join(r.Dir, it.Code, "*.meta.json"))
		for _, m := range metas {
			if rel, err := readMeta(m); err == nil {
				r.kept[it.Code] = append(r.kept[it.Code], rel)
			}
		}
		sort.Slice(r.kept[it.Code], func(i, j int) bool { return r.kept[it.Code][i].ID > r.kept[it.Code][j].ID })
	}
}

func readMeta(path string) (*Release, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rel Release
	return &rel, json.Unmarshal(b, &rel)
}

// Refresh makes a new release of every listed item of the base databases
// whose table moved since its last release, and returns how many it made.
func (r *Releaser) Refresh(ctx context.Context) (int, error) {
	n := 0
	var errs []error
	for _, it := range r.Catalog.Items {
		if !Listed(it) || !(pgsink.Config{}).Holds(it) {
			continue
		}
		made, err := r.refresh(ctx, it)
		if err != nil {
			errs = append(errs, fmt.Errorf("open release of %s: %w", it.Code, err))
			continue
		}
		if made {
			n++
		}
	}
	return n, errors.Join(errs...)
}

func (r *Releaser) refresh(ctx context.Context, it *catalog.Item) (bool, error) {
	tx, err := r.DB.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	pos, err := pgsink.LedgerOf(ctx, tx, r.Sink, it.Topic())
	if err != nil {
		return false, err
	}
	if len(pos) == 0 {
		return false, nil // the table is not there yet
	}
	if last := r.Latest(it.Code); last != nil && maps.Equal(last.Positions, pos) {
		return false, nil
	}
	cols := Columns(it)
	names := make([]string, len(cols))
	sel := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.f.Name
		sel[i] = pgx.Identifier{c.f.Name}.Sanitize() + "::text"
	}
	d, t := it.Namespace()
	rows, err := tx.Query(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+pgx.Identifier{d, t}.Sanitize()+" ORDER BY "+pgx.Identifier{it.Key}.Sanitize())
	if err != nil {
		return false, err
	}
	defer rows.Close()
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	created := now().UTC().Truncate(time.Second)
	id := created.Format("20060102T150405Z")
	dir := filepath.Join(r.Dir, it.Code)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	w, err := newWriters(dir, id, names)
	if err != nil {
		return false, err
	}
	defer w.abort()
	count := 0
	aggs := newAggregates(it, names)
	vals := make([]*string, len(cols))
	scan := make([]any, len(cols))
	for i := range vals {
		scan[i] = &vals[i]
	}
	out := make([]*string, len(cols))
	for rows.Next() {
		if err := rows.Scan(scan...); err != nil {
			return false, err
		}
		for i, c := range cols {
			out[i] = apply(c, vals[i])
		}
		if err := w.row(out); err != nil {
			return false, err
		}
		aggs.add(out)
		count++
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	rel := &Release{Item: it.Code, ID: id, Created: created, Rows: count, Positions: pos, Fields: names}
	if rel.Files, err = w.finish(); err != nil {
		return false, err
	}
	if err := aggs.write(dir, id, rel.Files); err != nil {
		return false, err
	}
	if prev := r.Latest(it.Code); it.OpenHistory && prev != nil {
		if err := writeChanges(dir, prev, rel); err != nil {
			return false, err
		}
	}
	meta, _ := json.MarshalIndent(rel, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, id+".meta.json"), meta, 0o644); err != nil {
		return false, err
	}
	r.keep(it.Code, rel)
	if r.Released != nil {
		r.Released(ctx, rel)
	}
	if r.Log != nil {
		r.Log.Info("open release made", "item", it.Code, "release", id, "rows", count)
	}
	return true, nil
}

// keep adds rel as the item's newest release and removes the files of
// those beyond the newest Keep.
func (r *Releaser) keep(item string, rel *Release) {
	n := r.Keep
	if n <= 0 {
		n = 3
	}
	r.mu.Lock()
	r.load()
	rs := append([]*Release{rel}, r.kept[item]...)
	old := rs[min(n, len(rs)):]
	r.kept[item] = rs[:min(n, len(rs))]
	r.mu.Unlock()
	for _, o := range old {
		for _, f := range o.Files {
			os.Remove(filepath.Join(r.Dir, item, f.Name))
		}
		os.Remove(filepath.Join(r.Dir, item, o.ID+".meta.json"))
	}
}

// apply de-identifies one value (nil: NULL).
func apply(c released, v *string) *string {
	if v == nil {
		return nil
	}
	s := *v
	switch c.rule {
	case catalog.OpenClear:
	case catalog.OpenMask:
		if c.f.Type == catalog.TypeString {
			s = feed.Mask(c.f, s)
		} else {
			s = "***"
		}
	case catalog.OpenYear:
		if len(s) >= 4 {
			s = s[:4]
		}
	case catalog.OpenRegion:
		if len(s) >= 4 {
			s = s[:4] + "00"
		}
	default:
		return nil
	}
	return &s
}

// writers write a release's CSV and JSON side by side, each hashed.
type writers struct {
	dir, id     string
	names       []string
	csvF, jsonF *os.File
	csvB, jsonB *bufio.Writer
	csvH, jsonH hashCount
	csvW        *csv.Writer
	first       bool
	done        bool
}

type hashCount struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (h *hashCount) Write(p []byte) (int, error) { h.n += int64(len(p)); return h.h.Write(p) }

func newWriters(dir, id string, names []string) (*writers, error) {
	w := &writers{dir: dir, id: id, names: names, first: true}
	var err error
	if w.csvF, err = os.CreateTemp(dir, ".csv-*"); err != nil {
		return nil, err
	}
	if w.jsonF, err = os.CreateTemp(dir, ".json-*"); err != nil {
		w.csvF.Close()
		os.Remove(w.csvF.Name())
		return nil, err
	}
	w.csvH.h, w.jsonH.h = sha256.New(), sha256.New()
	w.csvB = bufio.NewWriterSize(io.MultiWriter(w.csvF, &w.csvH), 1<<16)
	w.jsonB = bufio.NewWriterSize(io.MultiWriter(w.jsonF, &w.jsonH), 1<<16)
	w.csvB.WriteString("\uFEFF") // a BOM: spreadsheets read the CSV as UTF-8
	w.csvW = csv.NewWriter(w.csvB)
	if err := w.csvW.Write(names); err != nil {
		return nil, err
	}
	w.jsonB.WriteString("[")
	return w, nil
}

func (w *writers) row(vals []*string) error {
	rec := make([]string, len(vals))
	for i, v := range vals {
		if v != nil {
			rec[i] = *v
		}
	}
	if err := w.csvW.Write(rec); err != nil {
		return err
	}
	if !w.first {
		w.jsonB.WriteString(",")
	}
	w.first = false
	w.jsonB.WriteString("\n{")
	for i, v := range vals {
		if i > 0 {
			w.jsonB.WriteString(",")
		}
		k, _ := json.Marshal(w.names[i])
		w.jsonB.Write(k)
		w.jsonB.WriteString(":")
		if v == nil {
			w.jsonB.WriteString("null")
		} else {
			b, _ := json.Marshal(*v)
			w.jsonB.Write(b)
		}
	}
	_, err := w.jsonB.WriteString("}")
	return err
}

func (w *writers) finish() (map[string]File, error) {
	w.csvW.Flush()
	if err := w.csvW.Error(); err != nil {
		return nil, err
	}
	w.jsonB.WriteString("\n]\n")
	files := map[string]File{}
	for _, x := range []struct {
		format string
		b      *bufio.Writer
		f      *os.File
		h      *hashCount
	}{{"csv", w.csvB, w.csvF, &w.csvH}, {"json", w.jsonB, w.jsonF, &w.jsonH}} {
		if err := x.b.Flush(); err != nil {
			return nil, err
		}
		if err := x.f.Sync(); err != nil {
			return nil, err
		}
		x.f.Close()
		if err := os.Chmod(x.f.Name(), 0o644); err != nil {
			return nil, err
		}
		name := w.id + "." + x.format
		if err := os.Rename(x.f.Name(), filepath.Join(w.dir, name)); err != nil {
			return nil, err
		}
		files[x.format] = File{Name: name, Size: x.h.n, SHA256: hex.EncodeToString(x.h.h.Sum(nil))}
	}
	w.done = true
	return files, nil
}

func (w *writers) abort() {
	if w.done {
		return
	}
	for _, f := range []*os.File{w.csvF, w.jsonF} {
		f.Close()
		os.Remove(f.Name())
	}
}

// Formats are the formats of a release, in the order shown.
var Formats = []string{"csv", "json"}
