package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/internal/promutil"
)

// metrics are the bridge's series (docs/operations.md), labelled by the
// upstream bus and the received item.
type metrics struct {
	records  *prometheus.CounterVec   // bus, item, outcome (forwarded, kept)
	errors   *prometheus.CounterVec   // bus, kind
	flowing  *prometheus.GaugeVec     // bus, item
	unmapped *prometheus.GaugeVec     // bus
	high     *prometheus.GaugeVec     // bus, item, partition: the upstream topic's end
	position *prometheus.GaugeVec     // bus, item, partition: the next offset carried
	commit   *prometheus.HistogramVec // bus
}

func newMetrics(reg prometheus.Registerer) (_ *metrics, err error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_bridge_records_total",
			Help: "Upstream records the bridge carried into the receiving bus's inbox, committed with its position: forwarded, or kept (not fitting the item here: refused, in the quarantine)."},
			[]string{"bus", "item", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_bridge_errors_total",
			Help: "The bridge's failures by kind (publish: a transaction of the receiving bus failed and is retried; auth: a credential refused; fetch: reading the upstream bus; discover; status; dispute: relaying disputes; report: committing its reads to the upstream group)."},
			[]string{"bus", "kind"}),
		flowing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_bridge_flowing",
			Help: "1 while a received item's upstream feed is read; 0 when it is not (its grant revoked, or none yet): jutong bridge status says why."},
			[]string{"bus", "item"}),
		unmapped: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_bridge_unmapped_items",
			Help: "Upstream items granted to this bus that its catalog does not receive (not read: their records stay upstream until the catalog names them; the bridge's log names them)."},
			[]string{"bus"}),
		high: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_bridge_upstream_end_offset",
			Help: "The end (high watermark) of the upstream topic partition a received item is read from, as last fetched."},
			[]string{"bus", "item", "partition"}),
		position: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_bridge_position_offset",
			Help: "The next upstream offset of a partition the bridge will carry (committed on the receiving bus). Lag: jutong_bridge_upstream_end_offset - this."},
			[]string{"bus", "item", "partition"}),
		commit: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jutong_bridge_transaction_seconds",
			Help:    "Time to commit one batch and the bridge's position on the receiving bus, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"bus"}),
	}
	if reg != nil {
		m.records = promutil.Register(reg, m.records, &err)
		m.errors = promutil.Register(reg, m.errors, &err)
		m.flowing = promutil.Register(reg, m.flowing, &err)
		m.unmapped = promutil.Register(reg, m.unmapped, &err)
		m.high = promutil.Register(reg, m.high, &err)
		m.position = promutil.Register(reg, m.position, &err)
		m.commit = promutil.Register(reg, m.commit, &err)
	}
	return m, err
}
