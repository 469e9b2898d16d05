package producers

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the publisher's counters; they are shared by every publisher
// registered on the same registry.
type metrics struct {
	published *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	failed    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jutong_published_events_total",
			Help: "Change events accepted at the door and acknowledged by Kafka, by item and department.",
		}, []string{"item", "department"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jutong_rejected_events_total",
			Help: "Change events refused at the door (and quarantined), by item, department and rule.",
		}, []string{"item", "department", "rule"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jutong_publish_failures_total",
			Help: "Change events Kafka did not acknowledge (not published; the caller got the error), by item and department.",
		}, []string{"item", "department"}),
	}
	if reg != nil {
		m.published = register(reg, m.published)
		m.rejected = register(reg, m.rejected)
		m.failed = register(reg, m.failed)
	}
	return m
}

// register registers c, or returns the identical collector already there.
func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}
