package bus

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/http"
	"sort"

	"github.com/jutong/jutong/server/portal"
)

// servePortal adds the sharing side of the portal (/portal/): the
// departments' officers and the data authority, signed in with their
// officer tokens.
func (b *Bus) servePortal(mux *http.ServeMux) error {
	// The instances of one bus share the sessions' key: it derives from the
	// feeds' secret, which they share.
	m := hmac.New(sha256.New, b.feedKey)
	m.Write([]byte("portal sessions"))
	p, err := portal.New(portal.Config{Catalog: b.cfg.Catalog, Control: b.Control, Disputes: b.Disputes, Proposals: b.Proposals, Officers: b.Officers,
		Secret: m.Sum(nil), Scorecard: b.doorScorecard, Log: b.cfg.Log.With("component", "portal"), Now: b.cfg.Now})
	if err != nil {
		return err
	}
	mux.Handle("/portal/", p.Handler())
	return nil
}

// doorScorecard is a department's records at the door, by item, since
// this process started (jutong_door_records_total).
func (b *Bus) doorScorecard(dept string) []portal.Bar {
	mfs, err := b.Metrics.Gather()
	if err != nil {
		return nil
	}
	by := map[string]*portal.Bar{}
	for _, mf := range mfs {
		if mf.GetName() != "jutong_door_records_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["department"] != dept {
				continue
			}
			bar := by[labels["item"]]
			if bar == nil {
				bar = &portal.Bar{Label: labels["item"]}
				by[labels["item"]] = bar
			}
			switch labels["outcome"] {
			case "accepted":
				bar.Accepted += m.GetCounter().GetValue()
			case "rejected":
				bar.Refused += m.GetCounter().GetValue()
			}
		}
	}
	var out []portal.Bar
	for _, bar := range by {
		out = append(out, *bar)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}
