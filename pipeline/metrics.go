package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/internal/promutil"
)

// metrics are a runner's; every runner registered on one registry shares the
// collectors, told apart by the sink label.
type metrics struct {
	landed   *prometheus.CounterVec   // sink, item, department
	dead     *prometheus.CounterVec   // sink, item
	retries  *prometheus.CounterVec   // sink, op
	failing  *prometheus.GaugeVec     // sink
	batch    *prometheus.HistogramVec // sink
	duration *prometheus.HistogramVec // sink
	latency  *prometheus.HistogramVec // sink
	eventLat *prometheus.HistogramVec // sink
	lag      *prometheus.GaugeVec     // sink
	lastPub  *prometheus.GaugeVec     // item, department
	decodes  *prometheus.CounterVec   // sink, how
	stage    *prometheus.CounterVec   // stage, phase (promutil.StageSeconds)
}

func newMetrics(reg prometheus.Registerer) (_ *metrics, err error) {
	m := &metrics{
		landed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_sink_landed_events_total",
			Help: "Change events written by a sink (its ledger moved past them), by sink, item and source department."}, []string{"sink", "item", "department"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_sink_dead_letters_total",
			Help: "Records a sink could never write, sent to the dead-letter topic, by sink and item."}, []string{"sink", "item"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_sink_retries_total",
			Help: "Failed attempts of a sink operation that were retried (database or registry down or slow), by sink and operation."}, []string{"sink", "op"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_sink_failing",
			Help: "1 while a sink is retrying a failing operation, else 0."}, []string{"sink"}),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jutong_sink_batch_records",
			Help: "Records per batch written by a sink.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}, []string{"sink"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jutong_sink_batch_seconds",
			Help: "Time to write one batch, retries included.", Buckets: prometheus.ExponentialBuckets(0.001, 3, 12)}, []string{"sink"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jutong_sink_landing_latency_seconds",
			Help: "From an event's publish time to its landing in a sink.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}, []string{"sink"}),
		eventLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jutong_sink_event_latency_seconds",
			Help:    "From an event's time in its source system to its landing in a sink (the source's delay included).",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 14)}, []string{"sink"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_sink_lag_records",
			Help: "Records on a sink's topics not yet written by it (high watermarks at the last fetch minus its positions)."}, []string{"sink"}),
		lastPub: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_item_last_published_timestamp_seconds",
			Help: "Publish time of the newest change of an item landed in any sink (Unix seconds), by item and source department."}, []string{"item", "department"}),
		decodes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_sink_decodes_total",
			Help: "Change events a sink's runner decoded itself (how=decoded) or took decoded from another runner of the process (how=shared, the DecodeCache)."}, []string{"sink", "how"}),
		stage: promutil.StageSeconds(),
	}
	if reg != nil {
		m.landed = promutil.Register(reg, m.landed, &err)
		m.dead = promutil.Register(reg, m.dead, &err)
		m.retries = promutil.Register(reg, m.retries, &err)
		m.failing = promutil.Register(reg, m.failing, &err)
		m.batch = promutil.Register(reg, m.batch, &err)
		m.duration = promutil.Register(reg, m.duration, &err)
		m.latency = promutil.Register(reg, m.latency, &err)
		m.eventLat = promutil.Register(reg, m.eventLat, &err)
		m.lag = promutil.Register(reg, m.lag, &err)
		m.lastPub = promutil.Register(reg, m.lastPub, &err)
		m.decodes = promutil.Register(reg, m.decodes, &err)
		m.stage = promutil.Register(reg, m.stage, &err)
	}
	return m, err
}
