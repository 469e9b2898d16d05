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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/door"
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
	// Door checks and forwards the events, as it does the inboxes': one
	// door, one set of rules, one idempotency window.
	Door *door.Door
	// MaxBodyBytes bounds a request body (default 16 MiB); MaxEvents the
	// events in one request (default 10,000).
	MaxBodyBytes int64
	MaxEvents    int
	Log          *slog.Logger
	Registerer   prometheus.Registerer
}

// Gateway serves the ingest API.
type Gateway struct {
	cfg      Config
	requests *prometheus.CounterVec
}

// Validate says what is wrong with the configuration (after its defaults).
func (cfg Config) Validate() error {
	if cfg.Catalog == nil || cfg.Door == nil {
		return errors.New("gateway: a catalog and the door are required")
	}
	return nil
}

// defaults fills in what is not set.
func (cfg *Config) defaults() {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 10_000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
}

// New checks cfg and returns a gateway.
func New(cfg Config) (*Gateway, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg,
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
	// Corrects names the dispute this change corrects (docs/disputes.md).
	Corrects string `json:"corrects,omitempty"`
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
	bad  *rules.Violation // set when the line cannot become an event
	// corrects is the dispute the change names.
	corrects string
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
	resp, err := g.process(r.Context(), dept, it, lines)
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
		p.bad = &rules.Violation{Rule: rules.JSONSyntax, Reason: fmt.Sprintf("line %d is not a JSON event: %v", line, err)}
		return p
	}
	p.ev = &schemas.Event{ID: in.EventID, Op: schemas.Op(in.Op), Key: in.Key}
	p.corrects = in.Corrects
	if in.EventTime != "" {
		t, err := time.Parse(time.RFC3339Nano, in.EventTime)
		if err != nil {
			p.bad = &rules.Violation{Key: in.Key, Field: "event_time", Rule: rules.SchemaType, Reason: fmt.Sprintf("%q is not an RFC 3339 timestamp", in.EventTime)}
			return p
		}
		p.ev.EventTime = t.UTC().Truncate(time.Millisecond)
	}
	if len(in.Data) > 0 && string(in.Data) != "null" {
		var rec map[string]any
		dec := json.NewDecoder(bytes.NewReader(in.Data))
		dec.UseNumber()
		if err := dec.Decode(&rec); err != nil {
			p.bad = &rules.Violation{Key: in.Key, Field: "data", Rule: rules.SchemaType, Reason: "data must be a JSON object: " + err.Error()}
			return p
		}
		typed, err := schemas.FromJSON(it, rec)
		if err != nil {
			var fe *schemas.FieldError
			errors.As(err, &fe)
			p.ev.Data = rec
			p.bad = &rules.Violation{Key: in.Key, Field: fe.Field, Rule: rules.SchemaType, Reason: fe.Reason}
			return p
		}
		p.ev.Data = typed
	}
	return p
}

func (g *Gateway) process(ctx context.Context, dept string, it *catalog.Item, lines [][]byte) (*Response, error) {
	cands := make([]door.Candidate, len(lines))
	resp := &Response{Results: make([]Result, len(lines))}
	for i, raw := range lines {
		c := door.Candidate{Department: dept, Item: it.Code, Raw: raw}
		if v := rules.Size(it, len(raw), fmt.Sprintf("line %d", i+1)); v != nil {
			c.Bad = v
		} else {
			c.Bad = rules.CheckJSONText(i+1, raw) // bad bytes, lone surrogates: never decoded into U+FFFD
		}
		if c.Bad == nil {
			p := g.parse(it, i+1, raw)
			c.Event, c.Bad, c.Corrects = p.ev, p.bad, p.corrects
			if p.ev != nil {
				p.ev.Source.System, p.ev.Source.Adapter = "http-gateway", "http"
				resp.Results[i].EventID = p.ev.ID
			}
		}
		cands[i] = c
	}
	outs, err := g.cfg.Door.Admit(ctx, cands)
	if err != nil {
		return nil, err // nothing of the request is visible: it may be retried as a whole
	}
	for i, o := range outs {
		res := &resp.Results[i]
		res.Line, res.Status = i+1, o.Status
		switch o.Status {
		case door.Accepted, door.Duplicate:
			part, off := o.Partition, o.Offset
			res.Partition, res.Offset = &part, &off
			if o.Status == door.Accepted {
				resp.Accepted++
			} else {
				resp.Duplicate++
			}
		case door.Rejected:
			setRejected(res, o.Violation)
			resp.Rejected++
		}
	}
	return resp, nil
}

func setRejected(res *Result, v *rules.Violation) {
	res.Status, res.Rule, res.Field, res.Reason = "rejected", v.Rule, v.Field, v.Reason
}
