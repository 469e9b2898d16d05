package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/producers/contract"
	"github.com/jutong/jutong/schemas"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the gateway's OpenAPI 3 document.
func OpenAPI() []byte { return openAPI }

// Config configures a Gateway.
type Config struct {
	Catalog *catalog.Catalog
	// Tokens maps department codes to their bearer tokens.
	Tokens map[string]string
	// Publishing holds the options every department's publisher shares
	// (brokers, registry, metrics); the gateway adds the department's
	// Kafka credentials, so that it publishes as the department itself.
	Publishing []producers.Opt
	// Credentials maps the departments' Kafka principals to their passwords.
	Credentials map[string]string
	// MaxBodyBytes bounds a request body (default 16 MiB); MaxEvents the
	// events in one request (default 10,000).
	MaxBodyBytes int64
	MaxEvents    int
	// Remember is how many accepted event ids are kept to answer retries
	// (default 1,000,000; in memory, so a restart forgets them).
	Remember   int
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Gateway serves the ingest API.
type Gateway struct {
	cfg      Config
	seen     *idCache
	requests *prometheus.CounterVec

	pubMu sync.Mutex
	pubs  map[string]*producers.Publisher // by department, created on first use
}

// New checks cfg and returns a gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Catalog == nil || len(cfg.Publishing) == 0 {
		return nil, errors.New("gateway: a catalog and the publishers' options (brokers, registry) are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 10_000
	}
	if cfg.Remember <= 0 {
		cfg.Remember = 1_000_000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, seen: newIDCache(cfg.Remember), pubs: map[string]*producers.Publisher{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jutong_gateway_requests_total",
			Help: "HTTP ingest requests by HTTP status code.",
		}, []string{"code"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(g.requests); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// publisher returns the department's publisher, created once and reused.
func (g *Gateway) publisher(ctx context.Context, dept string) (*producers.Publisher, error) {
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	if p, ok := g.pubs[dept]; ok {
		return p, nil
	}
	d := g.cfg.Catalog.Department(dept)
	if d == nil {
		return nil, fmt.Errorf("gateway: unknown department %q", dept)
	}
	opts := append(slices.Clone(g.cfg.Publishing), producers.SASL(d.Principal, g.cfg.Credentials[d.Principal]),
		producers.Adapter("http"), producers.System("http-gateway"),
		producers.Logger(g.cfg.Log.With("department", dept)))
	p, err := producers.New(ctx, g.cfg.Catalog, dept, opts...)
	if err != nil {
		return nil, err
	}
	g.pubs[dept] = p
	return p, nil
}

// Close flushes and closes the departments' publishers (after the HTTP
// server stopped sending requests).
func (g *Gateway) Close() {
	g.pubMu.Lock()
	defer g.pubMu.Unlock()
	for dept, p := range g.pubs {
		p.Close()
		delete(g.pubs, dept)
	}
}

// Handler returns the gateway's routes.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/items/{code}/events", g.ingest)
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openAPI)
	})
	return mux
}

// Event is one change event as the API takes it.
type Event struct {
	EventID   string          `json:"event_id"`
	Op        string          `json:"op"`
	Key       string          `json:"key"`
	EventTime string          `json:"event_time,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// Result is the outcome of one event.
type Result struct {
	Line      int    `json:"line"`
	EventID   string `json:"event_id,omitempty"`
	Status    string `json:"status"` // accepted, duplicate, rejected
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
	Rule      string `json:"rule,omitempty"`
	Field     string `json:"field,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// Response is the body of a processed request.
type Response struct {
	Accepted  int      `json:"accepted"`
	Duplicate int      `json:"duplicate"`
	Rejected  int      `json:"rejected"`
	Results   []Result `json:"results"`
}

type apiError struct {
	Error string `json:"error"`
}

func (g *Gateway) reply(w http.ResponseWriter, code int, v any) {
	g.requests.WithLabelValues(fmt.Sprint(code)).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// department authenticates the bearer token.
func (g *Gateway) department(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return "", false
	}
	for dept, want := range g.cfg.Tokens {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1 {
			return dept, true
		}
	}
	return "", false
}

type parsed struct {
	line int
	raw  []byte
	ev   *schemas.Event
	bad  *contract.Violation // set when the line cannot become an event
}

func (g *Gateway) ingest(w http.ResponseWriter, r *http.Request) {
	dept, ok := g.department(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="jutong"`)
		g.reply(w, http.StatusUnauthorized, apiError{"a department's bearer token is required (Authorization: Bearer ...)"})
		return
	}
	it := g.cfg.Catalog.Item(r.PathValue("code"))
	if it == nil {
		g.reply(w, http.StatusNotFound, apiError{fmt.Sprintf("no catalog item %q", r.PathValue("code"))})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			g.reply(w, http.StatusRequestEntityTooLarge, apiError{fmt.Sprintf("request body over %d bytes: split it; nothing was published", g.cfg.MaxBodyBytes)})
			return
		}
		g.reply(w, http.StatusBadRequest, apiError{"reading the body: " + err.Error()})
		return
	}
	lines := splitLines(body)
	if len(lines) == 0 {
		g.reply(w, http.StatusBadRequest, apiError{"no event in the body: send one JSON event, or NDJSON"})
		return
	}
	if len(lines) > g.cfg.MaxEvents {
		g.reply(w, http.StatusRequestEntityTooLarge, apiError{fmt.Sprintf("%d events in one request, at most %d: split it; nothing was published", len(lines), g.cfg.MaxEvents)})
		return
	}
	pub, err := g.publisher(r.Context(), dept)
	if err != nil {
		g.cfg.Log.Error("gateway: publisher", "department", dept, "err", err)
		g.reply(w, http.StatusServiceUnavailable, apiError{"the bus is not reachable; retry later"})
		return
	}
	resp, err := g.process(r.Context(), pub, it, lines)
	if err != nil {
		g.cfg.Log.Error("gateway: publish", "item", it.Code, "department", dept, "err", err)
		g.reply(w, http.StatusServiceUnavailable, apiError{"publishing failed: " + err.Error() + "; retry the request: accepted events are not published twice"})
		return
	}
	g.reply(w, http.StatusOK, resp)
}

// splitLines splits NDJSON (or a single JSON event) into non-blank lines.
func splitLines(body []byte) [][]byte {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil
	}
	// A single, possibly pretty-printed, JSON object.
	if json.Valid(trimmed) && trimmed[0] == '{' {
		return [][]byte{trimmed}
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), len(body)+1)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			out = append(out, append([]byte(nil), l...))
		}
	}
	return out
}

func (g *Gateway) parse(it *catalog.Item, line int, raw []byte) parsed {
	p := parsed{line: line, raw: raw}
	var in Event
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		p.ev = &schemas.Event{}
		p.bad = &contract.Violation{Rule: "json.syntax", Reason: fmt.Sprintf("line %d is not a JSON event: %v", line, err)}
		return p
	}
	p.ev = &schemas.Event{ID: in.EventID, Op: schemas.Op(in.Op), Key: in.Key}
	if in.EventTime != "" {
		t, err := time.Parse(time.RFC3339Nano, in.EventTime)
		if err != nil {
			p.bad = &contract.Violation{Key: in.Key, Field: "event_time", Rule: "schema.type", Reason: fmt.Sprintf("%q is not an RFC 3339 timestamp", in.EventTime)}
			return p
		}
		p.ev.EventTime = t.UTC().Truncate(time.Millisecond)
	}
	if len(in.Data) > 0 && string(in.Data) != "null" {
		var rec map[string]any
		dec := json.NewDecoder(bytes.NewReader(in.Data))
		dec.UseNumber()
		if err := dec.Decode(&rec); err != nil {
			p.bad = &contract.Violation{Key: in.Key, Field: "data", Rule: "schema.type", Reason: "data must be a JSON object: " + err.Error()}
			return p
		}
		typed, err := schemas.FromJSON(it, rec)
		if err != nil {
			var fe *schemas.FieldError
			errors.As(err, &fe)
			p.ev.Data = rec
			p.bad = &contract.Violation{Key: in.Key, Field: fe.Field, Rule: "schema.type", Reason: fe.Reason}
			return p
		}
		p.ev.Data = typed
	}
	return p
}

func (g *Gateway) process(ctx context.Context, pub *producers.Publisher, it *catalog.Item, lines [][]byte) (*Response, error) {
	resp := &Response{Results: make([]Result, len(lines))}
	var toPublish []*schemas.Event
	var idx []int
	var claimed []string
	defer func() { g.seen.release(claimed) }()
	for i, raw := range lines {
		p := g.parse(it, i+1, raw)
		res := &resp.Results[i]
		res.Line, res.EventID = i+1, p.ev.ID
		if p.bad != nil {
			if _, err := pub.Quarantine(ctx, it.Code, p.ev, p.bad, p.raw); err != nil {
				return nil, err
			}
			setRejected(res, p.bad)
			resp.Rejected++
			continue
		}
		key := it.Code + "/" + p.ev.ID
		if p.ev.ID != "" {
			if prev, ok := g.seen.claim(key); !ok {
				res.Status = "duplicate"
				if prev != nil {
					res.Partition, res.Offset = &prev.partition, &prev.offset
				}
				resp.Duplicate++
				continue
			}
			claimed = append(claimed, key)
		}
		toPublish = append(toPublish, p.ev)
		idx = append(idx, i)
	}
	if len(toPublish) == 0 {
		return resp, nil
	}
	results, err := pub.Publish(ctx, it.Code, toPublish...)
	if results == nil {
		// Nothing was sent (the item's schema could not be registered, say):
		// the request fails as a whole and may be retried.
		return nil, err
	}
	for j, r := range results {
		res := &resp.Results[idx[j]]
		var v *contract.Violation
		switch {
		case r.Err == nil:
			res.Status = "accepted"
			part, off := r.Partition, r.Offset
			res.Partition, res.Offset = &part, &off
			resp.Accepted++
			g.seen.remember(it.Code+"/"+r.Event.ID, part, off)
		case errors.As(r.Err, &v):
			setRejected(res, v)
			resp.Rejected++
			var lost *producers.NotKeptError
			if errors.As(r.Err, &lost) {
				return nil, r.Err
			}
		default:
			return nil, r.Err // Kafka did not take it: the client retries the request
		}
	}
	return resp, nil
}

func setRejected(res *Result, v *contract.Violation) {
	res.Status, res.Rule, res.Field, res.Reason = "rejected", v.Rule, v.Field, v.Reason
}

// idCache remembers accepted event ids (and claims ids in flight) so that a
// retried request publishes nothing twice.
type idCache struct {
	mu     sync.Mutex
	max    int
	order  []string
	next   int
	done   map[string]*position
	flight map[string]bool
}

type position struct {
	partition int32
	offset    int64
}

func newIDCache(max int) *idCache {
	return &idCache{max: max, done: map[string]*position{}, flight: map[string]bool{}}
}

// claim reserves key for publishing; false when it was accepted before (its
// position) or is being published by another request (nil position).
func (c *idCache) claim(key string) (*position, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.done[key]; ok {
		return p, false
	}
	if c.flight[key] {
		return nil, false
	}
	c.flight[key] = true
	return nil, true
}

// release ends the claims of a request (accepted ids stay remembered).
func (c *idCache) release(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		delete(c.flight, k)
	}
}

func (c *idCache) remember(key string, partition int32, offset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.order) < c.max {
		c.order = append(c.order, key)
	} else {
		delete(c.done, c.order[c.next])
		c.order[c.next] = key
		c.next = (c.next + 1) % c.max
	}
	c.done[key] = &position{partition, offset}
}
