package lookup

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/internal/promutil"
)

type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (_ *metrics, err error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_lookups_total",
			Help: "Lookups of an item's current state by department and outcome (found, not_found, bad_request, unauthenticated, forbidden, rate_limited, unavailable, error)."},
			[]string{"item", "department", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "jutong_lookup_duration_seconds",
			Help: "Time to answer a lookup, audit included, by kind (key, field).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)},
			[]string{"kind"}),
	}
	if reg != nil {
		m.calls = promutil.Register(reg, m.calls, &err)
		m.duration = promutil.Register(reg, m.duration, &err)
	}
	return m, err
}
