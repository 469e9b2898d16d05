package sqladapter

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/retry"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

// Dialect is the SQL dialect of the source database.
type Dialect string

// The supported dialects.
const (
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
)

// Config configures an Adapter.
type Config struct {
	Item    *catalog.Item
	DB      *sql.DB
	Dialect Dialect
	Table   string
	// KeyColumn is the column holding the business key (default: the item's key field).
	KeyColumn string
	// UpdatedColumn orders changes (an updated-at timestamp, or a
	// monotonically increasing number); empty: snapshot only.
	UpdatedColumn string
	// DeletedColumn marks soft-deleted rows (true, 1, or a non-null time).
	DeletedColumn string
	// CorrectsColumn, when set, names the dispute a row's change corrects
	// (a dispute id, or empty or NULL for none): the change is published
	// naming it (the inbox header jutong.corrects), as
	// producers.Publisher.PublishCorrection does.
	CorrectsColumn string
	// KeyDiffEvery, when positive, finds rows deleted outright (tables
	// without a soft-delete column): at most this often, once the changes
	// are caught up, the adapter lists the table's keys and publishes a
	// DELETE for every key it published as live that is gone. The keys it
	// published are kept in the checkpoint topic, in the same transactions
	// as the events, so a restart neither misses nor repeats a delete.
	KeyDiffEvery time.Duration
	// Name identifies the adapter's checkpoint (default: item@table).
	Name string
	// Batch is the rows per transaction (default 1000).
	Batch int
	// Poll is how often Run looks for changes once caught up (default 5s).
	Poll time.Duration
	// Publisher must be Transactional.
	Publisher *producers.Publisher
	// Kafka reads the department's checkpoints topic (as the department).
	Kafka []kgo.Opt
	Log   *slog.Logger
}

// Checkpoint is the adapter's position, stored in the checkpoint topic.
type Checkpoint struct {
	SnapshotDone bool   `json:"snapshot_done"`
	AfterKey     string `json:"after_key,omitempty"` // snapshot progress
	// Watermark and WatermarkKey: the last change published, as (updated
	// column, key); Watermark is JSON of a time or a number.
	Watermark    json.RawMessage `json:"watermark,omitempty"`
	WatermarkKey string          `json:"watermark_key,omitempty"`
	// WatermarkAll says every row at Watermark was published (the watermark
	// taken when the snapshot started): changes are strictly after it.
	WatermarkAll bool `json:"watermark_all,omitempty"`
	// Rows counts the rows read so far; Unparsable those whose values could
	// not be typed (quarantined). Rows refused at the door are in the
	// quarantine topic too.
	Rows       int64     `json:"rows"`
	Unparsable int64     `json:"unparsable"`
	At         time.Time `json:"at"`
	// KeyLog counts the key-log records written (key diff only); DiffAt is
	// when the last key diff finished.
	KeyLog int64     `json:"key_log,omitempty"`
	DiffAt time.Time `json:"diff_at,omitzero"`
}

// keyLog is one record of the key log: the keys that became live (add) or
// were deleted (del) in one transaction. The log lives in the checkpoint
// topic under "<name>#keys#<n>", keys that compaction never merges.
type keyLog struct {
	Add []string `json:"add,omitempty"`
	Del []string `json:"del,omitempty"`
}

// Adapter publishes a table.
type Adapter struct {
	cfg    Config
	cols   []string // the item's fields present in the table, then key/updated/deleted
	cp     Checkpoint
	loaded bool
	// known holds the keys published as live (key diff only).
	known map[string]struct{}
}

// New checks the configuration and the table's columns.
func New(ctx context.Context, cfg Config) (*Adapter, error) {
	if cfg.Item == nil || cfg.DB == nil || cfg.Publisher == nil || cfg.Table == "" {
		return nil, errors.New("sqladapter: item, database, table and publisher are required")
	}
	if cfg.Dialect != Postgres && cfg.Dialect != MySQL {
		return nil, fmt.Errorf("sqladapter: dialect %q: want postgres or mysql", cfg.Dialect)
	}
	if cfg.KeyColumn == "" {
		cfg.KeyColumn = cfg.Item.Key
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Item.Code + "@" + cfg.Table
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &Adapter{cfg: cfg}
	if cfg.KeyDiffEvery > 0 {
		a.known = map[string]struct{}{}
	}
	have, err := a.tableColumns(ctx)
	if err != nil {
		return nil, err
	}
	for _, need := range []string{cfg.KeyColumn, cfg.UpdatedColumn, cfg.DeletedColumn, cfg.CorrectsColumn} {
		if need != "" && !have[strings.ToLower(need)] {
			return nil, fmt.Errorf("sqladapter: table %s has no column %q", cfg.Table, need)
		}
	}
	for _, f := range cfg.Item.Fields {
		if have[f.Name] {
			a.cols = append(a.cols, f.Name)
		}
	}
	if len(a.cols) == 0 {
		return nil, fmt.Errorf("sqladapter: table %s has no column named after a field of %s", cfg.Table, cfg.Item.Code)
	}
	return a, nil
}

func (a *Adapter) q(ident string) string {
	if a.cfg.Dialect == MySQL {
		return "`" + strings.ReplaceAll(ident, "`", "``") + "`"
	}
	return `"` + strings.ReplaceAll(ident, `"`, `""`) + `"`
}

func (a *Adapter) ph(n int) string {
	if a.cfg.Dialect == MySQL {
		return "?"
	}
	return fmt.Sprintf("$%d", n)
}

func (a *Adapter) tableColumns(ctx context.Context) (map[string]bool, error) {
	rows, err := a.cfg.DB.QueryContext(ctx, "SELECT * FROM "+a.q(a.cfg.Table)+" WHERE 1 = 0")
	if err != nil {
		return nil, fmt.Errorf("sqladapter: table %s: %w", a.cfg.Table, err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, n := range names {
		out[strings.ToLower(n)] = true
	}
	return out, nil
}

// Checkpoint returns the position the adapter is at.
func (a *Adapter) Checkpoint() Checkpoint { return a.cp }

// load reads the adapter's last committed checkpoint.
func (a *Adapter) load(ctx context.Context) error {
	found := false
	err := kafkaconn.ReadAll(ctx, a.cfg.Kafka, topicname.Checkpoints(a.cfg.Publisher.Department()), func(r *kgo.Record) {
		switch {
		case string(r.Key) == a.cfg.Name:
			var cp Checkpoint
			if json.Unmarshal(r.Value, &cp) == nil {
				a.cp, found = cp, true
			}
		case a.known != nil && strings.HasPrefix(string(r.Key), a.keyLogPrefix()):
			var kl keyLog
			if json.Unmarshal(r.Value, &kl) == nil {
				a.applyKeyLog(kl)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("sqladapter: read checkpoints: %w", err)
	}
	a.loaded = true
	a.cfg.Log.Info("sqladapter: resuming", "adapter", a.cfg.Name, "found", found, "snapshot_done", a.cp.SnapshotDone,
		"rows", a.cp.Rows, "known_keys", len(a.known))
	return nil
}

func (a *Adapter) keyLogPrefix() string { return a.cfg.Name + "#keys#" }

func (a *Adapter) applyKeyLog(kl keyLog) {
	for _, k := range kl.Add {
		a.known[k] = struct{}{}
	}
	for _, k := range kl.Del {
		delete(a.known, k)
	}
}

// Step publishes one batch and returns how many rows it read (0: nothing
// new). Run calls it in a loop; --once and the tests call it directly.
func (a *Adapter) Step(ctx context.Context) (int, error) {
	if !a.loaded {
		if err := a.load(ctx); err != nil {
			return 0, err
		}
	}
	if !a.cp.SnapshotDone {
		return a.snapshotStep(ctx)
	}
	if a.cfg.UpdatedColumn != "" {
		if n, err := a.changesStep(ctx); n > 0 || err != nil {
			return n, err
		}
	}
	if a.known != nil && time.Since(a.cp.DiffAt) >= a.cfg.KeyDiffEvery {
		return a.diffStep(ctx)
	}
	return 0, nil
}

// diffStep publishes a DELETE for each known key the table no longer has,
// in transactions of Batch keys, and returns how many it published.
func (a *Adapter) diffStep(ctx context.Context) (int, error) {
	rows, err := a.cfg.DB.QueryContext(ctx, "SELECT "+a.q(a.cfg.KeyColumn)+" FROM "+a.q(a.cfg.Table))
	if err != nil {
		return 0, fmt.Errorf("sqladapter: key diff of %s: %w", a.cfg.Table, err)
	}
	present := make(map[string]struct{}, len(a.known))
	for rows.Next() {
		var k sql.NullString
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sqladapter: key diff of %s: %w", a.cfg.Table, err)
		}
		present[k.String] = struct{}{}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sqladapter: key diff of %s: %w", a.cfg.Table, err)
	}
	var gone []string
	for k := range a.known {
		if _, ok := present[k]; !ok {
			gone = append(gone, k)
		}
	}
	slices.Sort(gone)
	now := time.Now().UTC().Truncate(time.Millisecond)
	published := 0
	for {
		chunk := gone[:min(len(gone), a.cfg.Batch)]
		gone = gone[len(chunk):]
		b := &readBatch{}
		for _, k := range chunk {
			b.events = append(b.events, &schemas.Event{ID: uuid.NewString(), Op: schemas.OpDelete, Key: k, EventTime: now})
		}
		cp := a.cp
		if len(gone) == 0 {
			cp.DiffAt = time.Now().UTC()
		}
		if err := a.commit(ctx, cp, b); err != nil {
			return published, err
		}
		published += len(chunk)
		if len(gone) == 0 {
			break
		}
	}
	if published > 0 {
		a.cfg.Log.Info("sqladapter: key diff published deletes", "adapter", a.cfg.Name, "deletes", published)
	}
	return published, nil
}

// Run publishes until ctx is done, polling for changes every Config.Poll. A
// failing database or Kafka is retried with backoff: a failed batch was not
// committed, so it is read and published again, once.
func (a *Adapter) Run(ctx context.Context) error {
	for {
		var n int
		_, err := retry.Do(ctx, retry.Backoff{Min: time.Second, Max: time.Minute}, func() (err error) {
			n, err = a.Step(ctx)
			return err
		}, func(_ int, err error, wait time.Duration) {
			a.cfg.Log.Warn("sqladapter: batch failed, will retry", "adapter", a.cfg.Name, "backoff", wait, "err", err)
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(a.cfg.Poll):
		}
	}
}

func (a *Adapter) selectList() string {
	cols := make([]string, 0, len(a.cols)+3)
	for _, c := range a.cols {
		cols = append(cols, a.q(c))
	}
	cols = append(cols, a.q(a.cfg.KeyColumn))
	if a.cfg.UpdatedColumn != "" {
		cols = append(cols, a.q(a.cfg.UpdatedColumn))
	}
	if a.cfg.DeletedColumn != "" {
		cols = append(cols, a.q(a.cfg.DeletedColumn))
	}
	if a.cfg.CorrectsColumn != "" {
		cols = append(cols, a.q(a.cfg.CorrectsColumn))
	}
	return strings.Join(cols, ", ")
}

func (a *Adapter) snapshotStep(ctx context.Context) (int, error) {
	cp := a.cp
	if cp.AfterKey == "" && a.cfg.UpdatedColumn != "" && cp.Watermark == nil {
		// Changes made while the snapshot runs are caught afterwards from
		// the watermark taken before it starts.
		var w any
		if err := a.cfg.DB.QueryRowContext(ctx, "SELECT max("+a.q(a.cfg.UpdatedColumn)+") FROM "+a.q(a.cfg.Table)).Scan(&w); err != nil {
			return 0, err
		}
		cp.Watermark, cp.WatermarkAll = watermark(w), true
	}
	query := "SELECT " + a.selectList() + " FROM " + a.q(a.cfg.Table)
	var args []any
	if cp.AfterKey != "" {
		query += " WHERE " + a.q(a.cfg.KeyColumn) + " > " + a.ph(1)
		args = append(args, cp.AfterKey)
	}
	query += fmt.Sprintf(" ORDER BY %s LIMIT %d", a.q(a.cfg.KeyColumn), a.cfg.Batch)
	batch, err := a.read(ctx, query, args, schemas.OpSnapshot)
	if err != nil {
		return 0, err
	}
	if len(batch.rows) == 0 {
		cp.SnapshotDone, cp.AfterKey = true, ""
		return 0, a.commit(ctx, cp, batch)
	}
	cp.AfterKey = batch.rows[len(batch.rows)-1].key
	if len(batch.rows) < a.cfg.Batch {
		cp.SnapshotDone, cp.AfterKey = true, ""
	}
	return len(batch.rows), a.commit(ctx, cp, batch)
}

func (a *Adapter) changesStep(ctx context.Context) (int, error) {
	cp := a.cp
	u, k := a.q(a.cfg.UpdatedColumn), a.q(a.cfg.KeyColumn)
	query := "SELECT " + a.selectList() + " FROM " + a.q(a.cfg.Table)
	var args []any
	if w, ok := parseWatermark(cp.Watermark); ok && cp.WatermarkAll {
		query += fmt.Sprintf(" WHERE %s > %s", u, a.ph(1))
		args = []any{w}
	} else if ok {
		query += fmt.Sprintf(" WHERE (%s > %s OR (%s = %s AND %s > %s))", u, a.ph(1), u, a.ph(2), k, a.ph(3))
		args = []any{w, w, cp.WatermarkKey}
	}
	query += fmt.Sprintf(" ORDER BY %s, %s LIMIT %d", u, k, a.cfg.Batch)
	batch, err := a.read(ctx, query, args, schemas.OpUpdate)
	if err != nil || len(batch.rows) == 0 {
		return 0, err
	}
	last := batch.rows[len(batch.rows)-1]
	cp.Watermark, cp.WatermarkKey, cp.WatermarkAll = watermark(last.updated), last.key, false
	return len(batch.rows), a.commit(ctx, cp, batch)
}

type row struct {
	key     string
	updated any
}

type readBatch struct {
	rows     []row
	events   []*schemas.Event
	rejects  []producers.Reject
	corrects map[string]string // event id -> the dispute it corrects
}

// read runs query and turns the rows into events (or rejects).
func (a *Adapter) read(ctx context.Context, query string, args []any, op schemas.Op) (*readBatch, error) {
	rows, err := a.cfg.DB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqladapter: %s: %w", a.cfg.Table, err)
	}
	defer rows.Close()
	n := len(a.cols)
	text := make([]sql.NullString, n+1)
	dest := make([]any, 0, n+3)
	for i := range text {
		dest = append(dest, &text[i])
	}
	var updated any
	var deleted, corrects sql.NullString
	if a.cfg.UpdatedColumn != "" {
		dest = append(dest, &updated)
	}
	if a.cfg.DeletedColumn != "" {
		dest = append(dest, &deleted)
	}
	if a.cfg.CorrectsColumn != "" {
		dest = append(dest, &corrects)
	}
	b := &readBatch{corrects: map[string]string{}}
	now := time.Now().UTC().Truncate(time.Millisecond)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("sqladapter: %s: %w", a.cfg.Table, err)
		}
		key := text[n].String
		b.rows = append(b.rows, row{key: key, updated: updated})
		ev := &schemas.Event{ID: uuid.NewString(), Op: op, Key: key, EventTime: now}
		if d := strings.TrimSpace(corrects.String); corrects.Valid && d != "" {
			b.corrects[ev.ID] = d
		}
		if t, ok := updated.(time.Time); ok {
			ev.EventTime = t.UTC().Truncate(time.Millisecond)
		}
		if deleted.Valid && isTrue(deleted.String) {
			if op == schemas.OpSnapshot {
				continue // not live: nothing to snapshot
			}
			ev.Op = schemas.OpDelete
			b.events = append(b.events, ev)
			continue
		}
		data := make(map[string]any, n)
		var bad *rules.Violation
		raw := map[string]string{}
		for i, c := range a.cols {
			if !text[i].Valid {
				data[c] = nil
				continue
			}
			raw[c] = text[i].String
			v, err := schemas.FromText(a.cfg.Item.Field(c), text[i].String)
			var fe *schemas.FieldError
			if errors.As(err, &fe) && bad == nil {
				bad = &rules.Violation{Key: key, Field: fe.Field, Rule: rules.SchemaType, Reason: fe.Reason}
			}
			data[c] = v
		}
		ev.Data = data
		if op == schemas.OpUpdate && a.known != nil {
			if _, ok := a.known[key]; !ok {
				ev.Op = schemas.OpCreate // first seen since the snapshot
			}
		}
		if bad != nil {
			rawJSON, _ := json.Marshal(raw)
			ev.Data = nil
			b.rejects = append(b.rejects, producers.Reject{Event: ev, Violation: bad, Raw: rawJSON})
			continue
		}
		b.events = append(b.events, ev)
	}
	return b, rows.Err()
}

func isTrue(s string) bool {
	switch strings.ToLower(s) {
	case "", "0", "f", "false", "n", "no":
		return false
	}
	return true // true, 1, or a deletion time
}

// commit publishes the batch and the new checkpoint in one transaction; the
// adapter moves to the new position only when it committed.
func (a *Adapter) commit(ctx context.Context, cp Checkpoint, b *readBatch) error {
	cp.Rows += int64(len(b.rows))
	cp.Unparsable += int64(len(b.rejects))
	cp.At = time.Now().UTC()
	var extra []*kgo.Record
	var kl keyLog
	if a.known != nil {
		kl = a.keyChanges(b.events)
		if len(kl.Add)+len(kl.Del) > 0 {
			v, err := json.Marshal(kl)
			if err != nil {
				return err
			}
			cp.KeyLog++
			extra = append(extra, &kgo.Record{Topic: topicname.Checkpoints(a.cfg.Publisher.Department()),
				Key: fmt.Appendf(nil, "%s%d", a.keyLogPrefix(), cp.KeyLog), Value: v})
		}
	}
	val, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	extra = append(extra, &kgo.Record{Topic: topicname.Checkpoints(a.cfg.Publisher.Department()), Key: []byte(a.cfg.Name), Value: val})
	if _, err := a.cfg.Publisher.PublishTxCorrecting(ctx, a.cfg.Item.Code, b.events, b.corrects, b.rejects, extra...); err != nil {
		return err
	}
	a.cp = cp
	if a.known != nil {
		a.applyKeyLog(kl)
	}
	return nil
}

// keyChanges lists how the events change the set of live keys.
func (a *Adapter) keyChanges(events []*schemas.Event) keyLog {
	var kl keyLog
	live := map[string]bool{} // the batch's last word on each key
	var order []string
	for _, e := range events {
		if _, seen := live[e.Key]; !seen {
			order = append(order, e.Key)
		}
		live[e.Key] = e.Op != schemas.OpDelete
	}
	for _, k := range order {
		_, was := a.known[k]
		switch {
		case live[k] && !was:
			kl.Add = append(kl.Add, k)
		case !live[k] && was:
			kl.Del = append(kl.Del, k)
		}
	}
	return kl
}

func watermark(v any) json.RawMessage {
	var b []byte
	switch x := v.(type) {
	case nil:
		return nil
	case time.Time:
		b, _ = json.Marshal(map[string]any{"time": x.UTC().Format(time.RFC3339Nano)})
	case []byte:
		b, _ = json.Marshal(map[string]any{"text": string(x)})
	case string:
		b, _ = json.Marshal(map[string]any{"text": x})
	case int64:
		b, _ = json.Marshal(map[string]any{"int": strconv.FormatInt(x, 10)})
	default:
		b, _ = json.Marshal(map[string]any{"text": fmt.Sprint(x)})
	}
	return b
}

func parseWatermark(raw json.RawMessage) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	var w struct {
		Time *string `json:"time"`
		Text *string `json:"text"`
		Int  *string `json:"int"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return nil, false
	}
	switch {
	case w.Time != nil:
		t, err := time.Parse(time.RFC3339Nano, *w.Time)
		return t, err == nil
	case w.Text != nil:
		return *w.Text, true
	case w.Int != nil:
		n, err := strconv.ParseInt(*w.Int, 10, 64)
		return n, err == nil
	}
	return nil, false
}
