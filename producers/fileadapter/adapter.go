package fileadapter

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

// Format is an extract's format.
type Format string

// The formats.
const (
	CSV   Format = "csv"
	JSONL Format = "jsonl"
)

// Config configures an Adapter.
type Config struct {
	Item      *catalog.Item
	Publisher *producers.Publisher
	// State is the state file of the previous extract (created when missing).
	State string
	// Extract is the extract to publish, in Format.
	Extract io.Reader
	Format  Format
	// Progress, when set, gets a progress line now and then (a terminal).
	Progress io.Writer
	// CorrectsColumn, when set, is a column (CSV) or field (JSONL) of the
	// extract that is no field of the item: the dispute a row's change
	// corrects (empty: none). The change is published naming it, as
	// producers.Publisher.PublishCorrection does; a row that did not change
	// publishes nothing, whatever it names.
	CorrectsColumn string
}

// Summary is what a run did.
type Summary struct {
	Rows, Created, Updated, Deleted, Unchanged, Rejected int
	Elapsed                                              time.Duration
}

func (s Summary) String() string {
	return fmt.Sprintf("%d rows: %d created, %d updated, %d deleted, %d unchanged, %d rejected (quarantined) in %s",
		s.Rows, s.Created, s.Updated, s.Deleted, s.Unchanged, s.Rejected, s.Elapsed.Round(time.Millisecond))
}

// state is the previous extract: key -> hash of its record.
type state struct {
	Item   string            `json:"item"`
	Hashes map[string]string `json:"hashes"`
}

func loadState(path, item string) (*state, error) {
	st := &state{Item: item, Hashes: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("fileadapter: state %s: %w", path, err)
	}
	if st.Item != item {
		return nil, fmt.Errorf("fileadapter: state %s is of item %s, not %s", path, st.Item, item)
	}
	return st, nil
}

func (st *state) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path) // atomic: the old state or the new one
}

// line is one record read from the extract.
type line struct {
	n        int
	data     map[string]any
	raw      []byte
	bad      *rules.Violation
	corrects string // the dispute the row's change corrects
}

// Adapter publishes the changes between an extract and the previous one.
//
// It is at-least-once: the state is saved after every change was
// acknowledged, so a run stopped in between publishes the same changes again
// when it is run again on the same extract. Those changes carry the same
// event ids (derived from the item, the key, the change and the previous
// extract's state), so a consumer, or the bus's idempotency, can tell them
// for repeats; the base databases' state is the same either way, while the
// ClickHouse history would show them twice.
type Adapter struct {
	cfg  Config
	prev *state
	sum  Summary
}

// New checks cfg and loads the previous extract's state.
func New(_ context.Context, cfg Config) (*Adapter, error) {
	if cfg.Item == nil || cfg.Publisher == nil || cfg.State == "" || cfg.Extract == nil {
		return nil, errors.New("fileadapter: item, publisher, state file and extract are required")
	}
	if cfg.Format != CSV && cfg.Format != JSONL {
		return nil, fmt.Errorf("fileadapter: format %q: want csv or jsonl", cfg.Format)
	}
	st, err := loadState(cfg.State, cfg.Item.Code)
	if err != nil {
		return nil, err
	}
	return &Adapter{cfg: cfg, prev: st}, nil
}

// Summary is what Run did.
func (a *Adapter) Summary() Summary { return a.sum }

// changes is the diff of an extract against the previous state.
type changes struct {
	events   []*schemas.Event
	corrects map[*schemas.Event]string // the dispute a change corrects
	hashes   map[*schemas.Event]string // the record's hash, for the next state
	rejects  []producers.Reject
	seen     map[string]bool // keys present in the extract
	next     *state          // unchanged keys so far; published ones are added
}

// Run diffs the extract against the state, publishes the changes and saves
// the new state.
func (a *Adapter) Run(ctx context.Context) error {
	start := time.Now()
	lines, err := read(a.cfg.Extract, a.cfg.Format, a.cfg.Item, a.cfg.CorrectsColumn)
	if err != nil {
		return err
	}
	c := a.diff(lines)
	if err := a.publish(ctx, c); err != nil {
		return err
	}
	// A key in the extract with no accepted version this run (its change was
	// refused) keeps the version the bus has; a key gone from it is dropped.
	for key, h := range a.prev.Hashes {
		if _, ok := c.next.Hashes[key]; !ok && c.seen[key] {
			c.next.Hashes[key] = h
		}
	}
	a.sum.Elapsed = time.Since(start)
	if err := c.next.save(a.cfg.State); err != nil {
		return err
	}
	a.prev = c.next
	return nil
}

// eventID derives a change's event id from what it is and what it follows,
// so that the same change published again has the same id.
func (a *Adapter) eventID(op schemas.Op, key, hash string) string {
	prev := a.prev.Hashes[key]
	return uuid.NewSHA1(idSpace, []byte(a.cfg.Item.Code+"\x00"+key+"\x00"+string(op)+"\x00"+prev+"\x00"+hash)).String()
}

// idSpace is the UUID name space of the file adapter's event ids.
var idSpace = uuid.MustParse("6f1b5a2e-8c4d-4e0b-9a57-2d3c1e0f4b6a")

// diff turns the extract's lines into changes against the previous state.
func (a *Adapter) diff(lines []line) *changes {
	it, st := a.cfg.Item, a.prev
	c := &changes{hashes: map[*schemas.Event]string{}, corrects: map[*schemas.Event]string{}, seen: map[string]bool{},
		next: &state{Item: it.Code, Hashes: make(map[string]string, len(st.Hashes))}}
	now := time.Now().UTC().Truncate(time.Millisecond)
	reject := func(l line, key string, v *rules.Violation) {
		v.Key = key
		c.rejects = append(c.rejects, producers.Reject{Event: &schemas.Event{ID: uuid.NewString(), Op: schemas.OpUpdate, Key: key, EventTime: now, Data: l.data}, Violation: v, Raw: l.raw})
	}
	for _, l := range lines {
		a.sum.Rows++
		key, _ := l.data[it.Key].(string)
		switch {
		case l.bad != nil:
			reject(l, key, l.bad)
			c.seen[key] = key != ""
			continue
		case key == "":
			reject(l, key, &rules.Violation{Field: it.Key, Rule: rules.KeyRequired, Reason: fmt.Sprintf("line %d has no %s", l.n, it.Key)})
			continue
		case c.seen[key]:
			reject(l, key, &rules.Violation{Field: it.Key, Rule: rules.KeyDuplicate, Reason: fmt.Sprintf("line %d repeats key %s within one extract", l.n, key)})
			continue
		}
		c.seen[key] = true
		canon, err := schemas.JSONValues(it, l.data)
		if err != nil {
			reject(l, key, &rules.Violation{Rule: rules.SchemaType, Reason: err.Error()})
			continue
		}
		sumHash := sha256.Sum256(canon)
		h := hex.EncodeToString(sumHash[:16])
		prev, existed := st.Hashes[key]
		op := schemas.OpCreate
		switch {
		case existed && prev == h:
			a.sum.Unchanged++
			c.next.Hashes[key] = h
			continue
		case existed:
			op = schemas.OpUpdate
		}
		e := &schemas.Event{ID: a.eventID(op, key, h), Op: op, Key: key, Data: l.data, EventTime: now}
		c.events, c.hashes[e] = append(c.events, e), h
		if l.corrects != "" {
			c.corrects[e] = l.corrects
		}
	}
	for key := range st.Hashes {
		if !c.seen[key] {
			c.events = append(c.events, &schemas.Event{ID: a.eventID(schemas.OpDelete, key, ""), Op: schemas.OpDelete, Key: key, EventTime: now})
		}
	}
	return c
}

// publish publishes the changes and quarantines the rejects, with a
// progress line; accepted changes enter the next state.
func (a *Adapter) publish(ctx context.Context, c *changes) error {
	it, cfg := a.cfg.Item, a.cfg
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed error
	done, total := 0, len(c.events)+len(c.rejects)
	progress := func() {
		if cfg.Progress != nil && total > 0 {
			pct := done * 100 / total
			bar := strings.Repeat("=", pct/4) + strings.Repeat(" ", 25-pct/4)
			fmt.Fprintf(cfg.Progress, "\r[%s] %3d%%  %d/%d changes", bar, pct, done, total)
		}
	}
	onResult := func(r producers.Result) {
		mu.Lock()
		defer mu.Unlock()
		done++
		var v *rules.Violation
		switch {
		case r.Err == nil:
			switch r.Event.Op {
			case schemas.OpCreate:
				a.sum.Created++
			case schemas.OpUpdate:
				a.sum.Updated++
			case schemas.OpDelete:
				a.sum.Deleted++
			}
			if r.Event.Op != schemas.OpDelete {
				c.next.Hashes[r.Event.Key] = c.hashes[r.Event]
			}
		case errors.As(r.Err, &v) && !errors.As(r.Err, new(*producers.NotKeptError)):
			a.sum.Rejected++
		default:
			if failed == nil {
				failed = r.Err
			}
		}
		if done%1000 == 0 {
			progress()
		}
		wg.Done()
	}
	var plain []*schemas.Event
	for _, e := range c.events {
		if c.corrects[e] == "" {
			plain = append(plain, e)
		}
	}
	for i := 0; i < len(plain); i += 5000 {
		chunk := plain[i:min(i+5000, len(plain))]
		wg.Add(len(chunk))
		if err := cfg.Publisher.PublishAsync(ctx, it.Code, onResult, chunk...); err != nil {
			return err
		}
	}
	wg.Wait()
	for e, dispute := range c.corrects { // one change per key per extract: no order to keep
		wg.Add(1)
		res, err := cfg.Publisher.PublishCorrection(ctx, it.Code, dispute, e)
		if err != nil && res.Err == nil {
			res.Err = err
		}
		onResult(res)
	}
	for _, rj := range c.rejects {
		wg.Add(1)
		res, err := cfg.Publisher.Quarantine(ctx, it.Code, rj.Event, rj.Violation, rj.Raw)
		if err != nil {
			return err
		}
		onResult(res)
	}
	progress()
	if cfg.Progress != nil && total > 0 {
		fmt.Fprintln(cfg.Progress)
	}
	if failed != nil {
		return fmt.Errorf("fileadapter: publishing failed, the state is left as it was (run again): %w", failed)
	}
	return nil
}

// read parses the whole extract into typed records; the corrects column,
// when named, is taken out of each.
func read(r io.Reader, format Format, it *catalog.Item, corrects string) ([]line, error) {
	switch format {
	case CSV:
		return readCSV(r, it, corrects)
	case JSONL:
		return readJSONL(r, it, corrects)
	}
	return nil, fmt.Errorf("fileadapter: format %q: want csv or jsonl", format)
}

func readCSV(r io.Reader, it *catalog.Item, corrects string) ([]line, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.FieldsPerRecord = -1 // checked per line, so a bad line is quarantined, not fatal
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("fileadapter: CSV header: %w", err)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // a BOM from spreadsheet exports
	var out []line
	for n := 2; ; n++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		l := line{n: n, data: map[string]any{}}
		if err != nil {
			l.bad = &rules.Violation{Rule: rules.CSVSyntax, Reason: fmt.Sprintf("line %d: %v", n, err)}
			out = append(out, l)
			continue
		}
		l.raw = []byte(strings.Join(rec, ","))
		if len(rec) != len(header) {
			l.bad = &rules.Violation{Rule: rules.CSVColumns, Reason: fmt.Sprintf("line %d has %d columns, the header %d", n, len(rec), len(header))}
			out = append(out, l)
			continue
		}
		for i, col := range header {
			if corrects != "" && strings.TrimSpace(col) == corrects {
				l.corrects = strings.TrimSpace(rec[i])
				continue
			}
			f := it.Field(strings.TrimSpace(col))
			if f == nil {
				l.data[col] = rec[i] // for the contract to refuse, naming it
				continue
			}
			v, err := schemas.FromText(f, rec[i])
			var fe *schemas.FieldError
			if errors.As(err, &fe) && l.bad == nil {
				l.bad = &rules.Violation{Field: fe.Field, Rule: rules.SchemaType, Reason: fmt.Sprintf("line %d: %s", n, fe.Reason)}
			}
			if err == nil {
				l.data[f.Name] = v
			}
		}
		out = append(out, l)
	}
}

func readJSONL(r io.Reader, it *catalog.Item, corrects string) ([]line, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var out []line
	for n := 1; sc.Scan(); n++ {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		l := line{n: n, raw: append([]byte(nil), raw...), data: map[string]any{}}
		if v := rules.CheckJSONText(n, raw); v != nil {
			l.bad = v // the decoder would turn it into U+FFFD, silently
			out = append(out, l)
			continue
		}
		var rec map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&rec); err != nil {
			l.bad = &rules.Violation{Rule: rules.JSONSyntax, Reason: fmt.Sprintf("line %d: %v", n, err)}
			out = append(out, l)
			continue
		}
		if corrects != "" {
			if v, ok := rec[corrects].(string); ok {
				l.corrects = strings.TrimSpace(v)
			}
			delete(rec, corrects)
		}
		typed, err := schemas.FromJSON(it, rec)
		var fe *schemas.FieldError
		if errors.As(err, &fe) {
			l.data = rec
			l.bad = &rules.Violation{Field: fe.Field, Rule: rules.SchemaType, Reason: fmt.Sprintf("line %d: %s", n, fe.Reason)}
		} else {
			l.data = typed
		}
		out = append(out, l)
	}
	return out, sc.Err()
}
