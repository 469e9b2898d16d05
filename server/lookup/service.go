package lookup

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/time/rate"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/audit"
)

// Grant is what a lookup needs of an active grant.
type Grant struct {
	ID      string // the application's id
	Purpose string // the purpose it was approved for
	Fields  []string
	Grade   int
	// Rate is how many lookups a second the grant allows (0: Config.Rate).
	Rate float64
	// KeySecret keys the pseudonyms of keys the grant masks, as its feed's
	// (feed.GrantKeySecret).
	KeySecret []byte
}

// Config configures a Service.
type Config struct {
	Catalog *catalog.Catalog
	// DB is the PostgreSQL database the PostgreSQL sink writes.
	DB *pgxpool.Pool
	// Authenticate resolves HTTP basic credentials to a department's code.
	Authenticate func(user, pass string) (dept string, ok bool)
	// Grants lists the department's active grants on an item.
	Grants func(dept, item string) []Grant
	// Audit records an event and returns when it is durable.
	Audit func(ctx context.Context, e audit.Event) error
	// Rate is the lookups a second a grant allows unless it says (default
	// 50), with bursts of as many.
	Rate float64
	// MaxPage bounds a query's page (default 100).
	MaxPage int
	// Sink is the PostgreSQL sink's name in its ledger (default
	// "postgres"): snapshots stop at its positions.
	Sink string
	// CursorSecret seals the cursors of pages (the key where the next page
	// starts, which a masked grant must not see); instances that share it
	// accept each other's cursors. Default: random, per process.
	CursorSecret []byte
	Now          func() time.Time
	Log          *slog.Logger
	// Registerer, when set, gets the lookups' metrics.
	Registerer prometheus.Registerer
	// Disputes, when set, lists the open disputes of a record: the answer
	// flags the record with their ids.
	Disputes func(item, key string) []string
	// Registry, when set, reaches the schema registry as the bus: Avro
	// answers carry the id of the grant's projected schema.
	Registry []sr.ClientOpt
}

// Service answers lookups.
type Service struct {
	cfg    Config
	tables pgsink.Config
	m      *metrics

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // by grant id
	aead     cipher.AEAD              // seals cursors

	cols, projections sync.Map // by item code; by grant (see projection)
	ids               sync.Map // schema ids by subject
	reg               *sr.Client
}

// Validate says what is wrong with the configuration (after its defaults).
func (cfg Config) Validate() error {
	if cfg.Catalog == nil || cfg.DB == nil || cfg.Authenticate == nil || cfg.Grants == nil || cfg.Audit == nil {
		return errors.New("lookup: Catalog, DB, Authenticate, Grants and Audit are required")
	}
	if len(cfg.CursorSecret) < 16 {
		return errors.New("lookup: a CursorSecret of 16 bytes or more is required")
	}
	return nil
}

// defaults fills in what is not set.
func (cfg *Config) defaults() {
	if cfg.Rate <= 0 {
		cfg.Rate = 50
	}
	if cfg.MaxPage <= 0 {
		cfg.MaxPage = 100
	}
	if cfg.Sink == "" {
		cfg.Sink = pgsink.Kind
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	aead, err := sealer(cfg.CursorSecret)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	svc := &Service{cfg: cfg, tables: pgsink.Config{Themes: cfg.Catalog.Themes}, m: m, limiters: map[string]*rate.Limiter{}, aead: aead}
	if len(cfg.Registry) > 0 {
		if svc.reg, err = sr.NewClient(cfg.Registry...); err != nil {
			return nil, err
		}
	}
	return svc, nil
}

// Record is one record as a grant sees it.
type Record struct {
	Key        string         `json:"key"`
	Data       map[string]any `json:"data"`
	Provenance Provenance     `json:"provenance"`
	// Disputes are the open disputes of the record (its flag): the source
	// is checking it.
	Disputes []string `json:"disputes,omitempty"`

	clearKey string         // for the next page's cursor, never shown
	raw      map[string]any // the projected data, typed (for Avro)
	shape    *catalog.Item  // the item as the grant sees it
}

// AppendJSON appends the record as encoding/json writes it (but for the
// order of data's fields: the catalog's), without its reflection: a
// snapshot writes a million.
func (r *Record) AppendJSON(buf []byte) ([]byte, error) {
	buf = append(buf, `{"key":`...)
	buf = schemas.AppendJSONString(buf, r.Key)
	buf = append(buf, `,"data":`...)
	buf, err := schemas.AppendJSONValues(buf, r.shape, r.raw)
	if err != nil {
		return nil, err
	}
	pr := &r.Provenance
	buf = append(buf, `,"provenance":{"source":`...)
	buf = schemas.AppendJSONString(buf, pr.Source)
	buf = append(buf, `,"event_id":`...)
	buf = schemas.AppendJSONString(buf, pr.EventID)
	buf = append(buf, `,"op":`...)
	buf = schemas.AppendJSONString(buf, pr.Op)
	buf = append(buf, `,"event_time":"`...)
	buf = pr.EventTime.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","publish_time":"`...)
	buf = pr.PublishTime.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","topic":`...)
	buf = schemas.AppendJSONString(buf, pr.Topic)
	buf = append(buf, `,"partition":`...)
	buf = strconv.AppendInt(buf, int64(pr.Partition), 10)
	buf = append(buf, `,"offset":`...)
	buf = strconv.AppendInt(buf, pr.Offset, 10)
	if pr.Upstream != "" {
		buf = append(buf, `,"upstream":`...)
		buf = schemas.AppendJSONString(buf, pr.Upstream)
	}
	buf = append(buf, '}')
	if len(r.Disputes) > 0 {
		buf = append(buf, `,"disputes":[`...)
		for i, id := range r.Disputes {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = schemas.AppendJSONString(buf, id)
		}
		buf = append(buf, ']')
	}
	return append(buf, '}'), nil
}

// Provenance says where a record's current state comes from.
type Provenance struct {
	Source      string    `json:"source"` // the source department
	EventID     string    `json:"event_id"`
	Op          string    `json:"op"`
	EventTime   time.Time `json:"event_time"`   // the change, as the source dated it
	PublishTime time.Time `json:"publish_time"` // when the bus accepted it
	Topic       string    `json:"topic"`
	Partition   int32     `json:"partition"`
	Offset      int64     `json:"offset"`
	// Upstream is, for an item received from another bus, where the
	// record was published there (model/upstream; docs/federation.md),
	// whatever fields the grant delivers.
	Upstream string `json:"upstream,omitempty"`
}

// Denied is a refusal: the status to answer and the reason.
type Denied struct {
	Status     int
	Reason     string
	RetryAfter time.Duration
}

func (d *Denied) Error() string { return d.Reason }

// authorize finds the department's grant on it for purpose and holds the
// call to the grant's rate.
func (s *Service) authorize(dept string, it *catalog.Item, purpose string) (Grant, error) {
	if strings.TrimSpace(purpose) == "" {
		return Grant{}, &Denied{Status: 400, Reason: "purpose: required (?purpose=...): the purpose the grant was approved for"}
	}
	grants := s.cfg.Grants(dept, it.Code)
	if len(grants) == 0 {
		return Grant{}, &Denied{Status: 403, Reason: fmt.Sprintf("%s has no active grant on %s: apply for it (jutong apply --item %s --purpose ...)", dept, it.Code, it.Code)}
	}
	var ids []string
	for _, g := range grants {
		if g.Purpose == purpose {
			return g, s.allow(g)
		}
		ids = append(ids, g.ID)
	}
	return Grant{}, &Denied{Status: 403, Reason: fmt.Sprintf("the purpose stated is not the purpose %s's grant on %s (%s) was approved for",
		dept, it.Code, strings.Join(ids, ", "))}
}

// allow takes one call from the grant's token bucket.
func (s *Service) allow(g Grant) error {
	r := g.Rate
	if r <= 0 {
		r = s.cfg.Rate
	}
	s.mu.Lock()
	lim, ok := s.limiters[g.ID]
	if !ok || float64(lim.Limit()) != r {
		lim = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		s.limiters[g.ID] = lim
	}
	s.mu.Unlock()
	now := s.cfg.Now()
	if lim.AllowN(now, 1) {
		return nil
	}
	res := lim.ReserveN(now, 1)
	wait := res.DelayFrom(now)
	res.CancelAt(now)
	return &Denied{Status: 429, Reason: fmt.Sprintf("grant %s allows %g lookups a second", g.ID, r), RetryAfter: wait}
}

// ByKey returns the record of key as the department's grant sees it (nil
// when there is none), audited.
func (s *Service) ByKey(ctx context.Context, dept, code, key, purpose string) (*Record, Grant, error) {
	it, err := s.item(code)
	if err != nil {
		return nil, Grant{}, err
	}
	g, err := s.authorize(dept, it, purpose)
	if err != nil {
		return nil, g, s.denied(ctx, dept, it, purpose, []string{key}, err)
	}
	recs, err := s.query(ctx, it, g, pgx.Identifier{it.Key}.Sanitize()+" = $1", []any{key}, 1)
	if err != nil {
		return nil, g, err
	}
	if err := s.audit(ctx, dept, it, g, purpose, []string{key}, len(recs)); err != nil {
		return nil, g, err
	}
	if len(recs) == 0 {
		return nil, g, nil
	}
	return &recs[0], g, nil
}

// Page is a page of a query's records, and where the next one starts.
type Page struct {
	Records []Record `json:"records"`
	// Next is the cursor of the next page ("" on the last): pass it as after.
	Next string `json:"next,omitempty"`
}

// ByField returns the records whose lookup field equals value, in key
// order from after (a cursor from the previous page), audited.
func (s *Service) ByField(ctx context.Context, dept, code, field, value, purpose, after string, limit int) (*Page, Grant, error) {
	it, err := s.item(code)
	if err != nil {
		return nil, Grant{}, err
	}
	if field != it.Key && !contains(it.Lookup, field) {
		return nil, Grant{}, &Denied{Status: 400, Reason: fmt.Sprintf("field: %s is not a lookup field of %s (lookup fields: %s)", field, it.Code, strings.Join(append([]string{it.Key}, it.Lookup...), ", "))}
	}
	asked := []string{field + "=" + value}
	g, err := s.authorize(dept, it, purpose)
	if err == nil && !s.projection(it, g).Delivers(field) {
		// A lookup by a field the grant masks or drops would tell which
		// records hold a value the grant may not see.
		err = &Denied{Status: 403, Reason: fmt.Sprintf("field: grant %s does not deliver %s in clear (%s): a lookup may name only the fields the grant sees; %s",
			g.ID, field, fieldWhy(it, g, field), "look a record up by its key with /records/{key}, or apply for the field")}
	}
	if err != nil {
		return nil, g, s.denied(ctx, dept, it, purpose, asked, err)
	}
	if limit <= 0 || limit > s.cfg.MaxPage {
		limit = s.cfg.MaxPage
	}
	from, err := s.cursorKey(after)
	if err != nil {
		return nil, g, err
	}
	key := pgx.Identifier{it.Key}.Sanitize()
	cond := pgx.Identifier{field}.Sanitize() + " = $1 AND " + key + " > $2 ORDER BY " + key
	recs, err := s.query(ctx, it, g, cond, []any{value, from}, limit+1)
	if err != nil {
		return nil, g, err
	}
	if err := s.audit(ctx, dept, it, g, purpose, asked, min(len(recs), limit)); err != nil {
		return nil, g, err
	}
	p := &Page{Records: recs}
	if len(recs) > limit {
		p.Records = recs[:limit]
		p.Next = s.cursor(recs[limit-1].clearKey)
	}
	return p, g, nil
}

// fieldWhy says why a grant does not see a field in clear.
func fieldWhy(it *catalog.Item, g Grant, field string) string {
	f := it.Field(field)
	if f.Name != it.Key && !contains(g.Fields, field) {
		return "not among the grant's fields"
	}
	return fmt.Sprintf("grade %d, above the grant's grade %d", f.Grade, g.Grade)
}

func (s *Service) item(code string) (*catalog.Item, error) {
	it := s.cfg.Catalog.Item(code)
	if it == nil {
		return nil, &Denied{Status: 404, Reason: fmt.Sprintf("no catalog item %q", code)}
	}
	if !s.tables.Holds(it) {
		return nil, &Denied{Status: 404, Reason: fmt.Sprintf("%s is in no base or theme database: it has no current state to look up", code)}
	}
	return it, nil
}

// denied audits a refused call (not one refused for its rate) and returns err.
func (s *Service) denied(ctx context.Context, dept string, it *catalog.Item, purpose string, keys []string, err error) error {
	var d *Denied
	if errors.As(err, &d) && d.Status == 403 {
		if aerr := s.cfg.Audit(ctx, audit.Event{Time: s.cfg.Now().UTC(), Kind: audit.LookupRefused, Department: dept, Item: it.Code,
			Actor: dept, Purpose: purpose, Keys: keys, Detail: d.Reason}); aerr != nil {
			s.cfg.Log.Warn("lookup: the audit of a refused call failed", "department", dept, "item", it.Code, "err", aerr)
		}
	}
	return err
}

func (s *Service) audit(ctx context.Context, dept string, it *catalog.Item, g Grant, purpose string, keys []string, found int) error {
	var detail string
	if it.Upstream != nil { // the records' own provenance is in the answer
		detail = "received from the bus " + it.Upstream.Bus + " (its " + it.Upstream.Item + ")"
	}
	err := s.cfg.Audit(ctx, audit.Event{Time: s.cfg.Now().UTC(), Kind: audit.Lookup, Department: dept, Item: it.Code,
		Application: g.ID, Grant: g.ID, Actor: dept, Purpose: purpose, Keys: keys, Records: int64(found), Detail: detail})
	if err != nil {
		return &Denied{Status: 503, Reason: "the call could not be audited, so it is not answered: retry", RetryAfter: time.Second}
	}
	return nil
}

// query reads up to limit records of it matching cond and projects them
// for g.
func (s *Service) query(ctx context.Context, it *catalog.Item, g Grant, cond string, args []any, limit int) ([]Record, error) {
	sql := fmt.Sprintf("SELECT %s FROM %s WHERE %s LIMIT %d", s.columns(it), s.table(it), cond, limit)
	rows, err := s.cfg.DB.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("lookup: %s: %w", it.Code, err)
	}
	defer rows.Close()
	p := s.projection(it, g)
	var out []Record
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, fmt.Errorf("lookup: %s: %w", it.Code, err)
		}
		rec := s.record(it, p, vals, true)
		if s.cfg.Disputes != nil {
			rec.Disputes = s.cfg.Disputes(it.Code, rec.clearKey)
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// record turns a row of the item's table (columns' order) into the record
// as p sees it.
func (s *Service) record(it *catalog.Item, p *feed.Projection, vals []any, portableData bool) Record {
	data := make(map[string]any, len(it.Fields))
	for i, f := range it.Fields {
		data[f.Name] = value(vals[i])
	}
	meta := vals[len(it.Fields):]
	prov := Provenance{Source: it.Source, Topic: it.Topic()}
	prov.EventID, _ = meta[0].(string)
	prov.Op, _ = meta[1].(string)
	prov.EventTime, _ = meta[2].(time.Time)
	prov.PublishTime, _ = meta[3].(time.Time)
	prov.Partition = int32(asInt(meta[4]))
	prov.Offset = asInt(meta[5])
	if it.Upstream != nil {
		prov.Upstream, _ = data[catalog.UpstreamField].(string)
	}
	key, _ := data[it.Key].(string)
	raw := p.Apply(data)
	rec := Record{Key: p.Key(key), Provenance: prov, clearKey: key, raw: raw, shape: p.Item}
	if portableData { // a snapshot writes raw through AppendJSON instead
		rec.Data = portable(p, raw)
	}
	return rec
}

// columns is the select list of an item's table: its fields, then the
// change's metadata (cached: the catalog does not change while it runs).
func (s *Service) columns(it *catalog.Item) string {
	if c, ok := s.cols.Load(it.Code); ok {
		return c.(string)
	}
	cols := make([]string, 0, len(it.Fields)+6)
	for _, f := range it.Fields {
		cols = append(cols, pgx.Identifier{f.Name}.Sanitize())
	}
	cols = append(cols, "_event_id::text", "_op", "_event_time", "_publish_time", "_partition", "_offset")
	c := strings.Join(cols, ", ")
	s.cols.Store(it.Code, c)
	return c
}

func (s *Service) table(it *catalog.Item) string {
	d, n := it.Namespace()
	return pgx.Identifier{d, n}.Sanitize()
}

// projection is how g sees it, made once per grant (a grant's fields and
// grade never change; another grant has another id).
func (s *Service) projection(it *catalog.Item, g Grant) *feed.Projection {
	key := g.ID + "\x00" + strconv.Itoa(g.Grade) + "\x00" + strings.Join(g.Fields, ",")
	if p, ok := s.projections.Load(key); ok {
		return p.(*feed.Projection)
	}
	p := feed.Project(it, feed.Grant{ID: g.ID, Item: it.Code, Fields: g.Fields, Grade: g.Grade, KeySecret: g.KeySecret})
	s.projections.Store(key, p)
	return p
}

// portable renders projected data as JSON values, as feeds' readers do.
func portable(p *feed.Projection, data map[string]any) map[string]any {
	out := make(map[string]any, len(data))
	for name, v := range data {
		out[name] = schemas.PortableValue(p.Item.Field(name), v)
	}
	return out
}

// value converts what pgx returns to the values the item's codecs use.
func value(v any) any {
	switch x := v.(type) {
	case pgtype.Numeric:
		if !x.Valid || x.Int == nil {
			return nil
		}
		r := new(big.Rat).SetInt(x.Int)
		if x.Exp != 0 {
			e := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(absInt(int(x.Exp)))), nil)
			if x.Exp > 0 {
				r.Mul(r, new(big.Rat).SetInt(e))
			} else {
				r.Quo(r, new(big.Rat).SetInt(e))
			}
		}
		return r
	case int32:
		return int64(x)
	}
	return v
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	}
	return 0
}

func absInt(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
