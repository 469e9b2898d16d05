package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/httpapi"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/server/dispute"
)

// Officers are the bridge's officers on both buses, for relaying disputes
// (docs/federation.md): on the receiving bus the upstream bus's department
// (the received items' source, which disputes of them are routed to), on
// the upstream bus the receiving bus's department there (which reads the
// items, and so may dispute them). Each API is the bus's HTTP API.
type Officers struct {
	UpstreamAPI, UpstreamToken     string
	UpstreamHTTP                   *http.Client
	DownstreamAPI, DownstreamToken string
	DownstreamHTTP                 *http.Client
	// Every is how often the relay looks (default 5s).
	Every time.Duration
}

// Relay is the ledger entry of one relayed dispute.
type Relay struct {
	Down     string            `json:"down"`               // the dispute on the receiving bus
	Up       string            `json:"up,omitempty"`       // the dispute it raised upstream
	State    string            `json:"state"`              // raised, correcting, corrected, rejected (answered here as upstream did), refused (upstream refused it)
	Receipts []dispute.Receipt `json:"receipts,omitempty"` // the upstream's receipts of the correction
	At       time.Time         `json:"at"`
}

const relayPrefix = "bridge.dispute."

// relayDisputes carries disputes of received items up and their answers
// down, until ctx ends.
func (b *Bridge) relayDisputes(ctx context.Context) {
	o := b.cfg.Officers
	every := o.Every
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := b.relayOnce(ctx); err != nil && ctx.Err() == nil {
			b.m.errors.WithLabelValues(b.bus, "dispute").Inc()
			b.log.Warn("bridge: relay disputes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// relayOnce looks once: new disputes of received items go up (raised by
// this bus's department there, on the upstream item, the same record and
// fields); an upstream answer comes down (a correction names the same
// change here, which the bridge carried with the same event id; a
// rejection gives the upstream's reason).
func (b *Bridge) relayOnce(ctx context.Context) error {
	o := b.cfg.Officers
	var down []dispute.Dispute
	if err := call(ctx, o.DownstreamHTTP, o.DownstreamAPI, o.DownstreamToken, "GET", "/v1/disputes", nil, &down); err != nil {
		return fmt.Errorf("list the disputes here: %w", err)
	}
	for _, d := range down {
		it := b.cfg.Catalog.Item(d.Item)
		if it == nil || it.Source != b.cfg.Department || it.Upstream == nil || d.State != dispute.Pending {
			continue
		}
		b.mu.Lock()
		_, known := b.relays[d.ID]
		b.mu.Unlock()
		if !known {
			r := &Relay{Down: d.ID, State: "raised"}
			req := dispute.Request{Item: it.Upstream.Item, Key: d.Key, Fields: d.Fields, Evidence: d.Evidence,
				Claim: fmt.Sprintf("%s（%s 总线 %s 提出，疑义 %s）", d.Claim, b.cfg.Catalog.BusName(), d.RaisedBy, d.ID)}
			var up dispute.Dispute
			if err := call(ctx, o.UpstreamHTTP, o.UpstreamAPI, o.UpstreamToken, "POST", "/v1/disputes", req, &up); err != nil {
				var he *httpapi.StatusError
				if !errors.As(err, &he) || he.Status >= 500 {
					return fmt.Errorf("raise %s upstream: %w", d.ID, err)
				}
				// Refused upstream (the grant there no longer covers it,
				// say): answered here with the upstream's reason.
				r.State = "refused"
				reason := fmt.Sprintf("上游 %s 总线不受理此疑义 (the upstream bus %s refuses it): %s", b.bus, b.bus, he.Message)
				if err := call(ctx, o.DownstreamHTTP, o.DownstreamAPI, o.DownstreamToken, "POST", "/v1/disputes/"+d.ID+"/reject", map[string]string{"reason": reason}, nil); err != nil {
					return fmt.Errorf("answer %s: %w", d.ID, err)
				}
			} else {
				r.Up = up.ID
			}
			if err := b.saveRelay(ctx, r); err != nil {
				return err
			}
			b.log.Info("bridge: dispute relayed upstream", "dispute", d.ID, "upstream", r.Up, "state", r.State)
		}
	}
	// The answers upstream, of every relay still waiting on one.
	b.mu.Lock()
	var waiting []*Relay
	for _, r := range b.relays {
		if (r.State == "raised" || r.State == "correcting") && r.Up != "" {
			waiting = append(waiting, r)
		}
	}
	b.mu.Unlock()
	for _, r := range waiting {
		var up dispute.Dispute
		if err := call(ctx, o.UpstreamHTTP, o.UpstreamAPI, o.UpstreamToken, "GET", "/v1/disputes/"+r.Up, nil, &up); err != nil {
			return fmt.Errorf("read %s upstream: %w", r.Up, err)
		}
		next := *r
		switch {
		case up.State == dispute.Rejected && r.State == "raised":
			reason := fmt.Sprintf("上游来源驳回 (rejected by the source on %s, %s): %s", b.bus, up.Source, up.Reason)
			if err := call(ctx, o.DownstreamHTTP, o.DownstreamAPI, o.DownstreamToken, "POST", "/v1/disputes/"+r.Down+"/reject", map[string]string{"reason": reason}, nil); err != nil {
				return fmt.Errorf("answer %s: %w", r.Down, err)
			}
			next.State = "rejected"
		case (up.State == dispute.Correcting || up.State == dispute.Corrected) && up.Correction != "" && r.State == "raised":
			// The same change, carried down with its event id.
			if err := call(ctx, o.DownstreamHTTP, o.DownstreamAPI, o.DownstreamToken, "POST", "/v1/disputes/"+r.Down+"/correct", map[string]string{"event_id": up.Correction}, nil); err != nil {
				return fmt.Errorf("correct %s: %w", r.Down, err)
			}
			next.State = "correcting"
			if up.State == dispute.Corrected {
				next.State, next.Receipts = "corrected", up.Receipts
			}
		case up.State == dispute.Corrected && r.State == "correcting":
			next.State, next.Receipts = "corrected", up.Receipts // landed upstream too: its receipts kept
		default:
			continue
		}
		if err := b.saveRelay(ctx, &next); err != nil {
			return err
		}
		b.log.Info("bridge: dispute answered from upstream", "dispute", r.Down, "upstream", r.Up, "state", next.State)
	}
	return nil
}

// saveRelay records a relay in the ledger (the checkpoints topic), then in
// memory. A crash between raising upstream and saving raises it again,
// which joins the dispute already open there (the same department, record
// and fields): nothing doubles.
func (b *Bridge) saveRelay(ctx context.Context, r *Relay) error {
	r.At = time.Now().UTC()
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var anyItem string
	for _, it := range b.items {
		anyItem = it.Code
		break
	}
	rec := &kgo.Record{Topic: topicname.Checkpoints(b.cfg.Department), Key: []byte(relayPrefix + r.Down), Value: v}
	if _, err := b.pub.PublishTx(ctx, anyItem, nil, nil, rec); err != nil {
		return fmt.Errorf("record the relay of %s: %w", r.Down, err)
	}
	b.mu.Lock()
	b.relays[r.Down] = r
	b.mu.Unlock()
	return nil
}

// call makes one officer's call and decodes the answer into out (when
// not nil).
func call(ctx context.Context, hc *http.Client, api, token, method, path string, body, out any) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := httpapi.Call(cctx, hc, api, token, method, path, body)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}
