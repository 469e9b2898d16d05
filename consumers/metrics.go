package consumers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/internal/promutil"
)

// metrics are the subscriber's counters, shared by every subscriber
// registered on the same registry.
type metrics struct {
	delivered   *prometheus.CounterVec
	undecodable *prometheus.CounterVec
	flags       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (_ *metrics, err error) {
	m := &metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jutong_subscriber_delivered_total",
			Help: "Change events a subscriber's handler took, by item.",
		}, []string{"item"}),
		undecodable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jutong_subscriber_undecodable_total",
			Help: "Records a subscriber could not decode (not framed Avro, unknown schema id) and handed to its OnUndecodable callback, by item.",
		}, []string{"item"}),
		flags: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jutong_subscriber_flags_total",
			Help: "Dispute flags a subscriber read (a record's open disputes changed), from the flags topic of what it reads, by item.",
		}, []string{"item"}),
	}
	if reg != nil {
		m.delivered = promutil.Register(reg, m.delivered, &err)
		m.undecodable = promutil.Register(reg, m.undecodable, &err)
		m.flags = promutil.Register(reg, m.flags, &err)
	}
	return m, err
}
