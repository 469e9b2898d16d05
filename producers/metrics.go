package producers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/internal/promutil"
)

// metrics are the publisher's counters; they are shared by every publisher
// registered on the same registry.
type metrics struct {
	published *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	failed    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (_ *metrics, err error) {
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
		m.published = promutil.Register(reg, m.published, &err)
		m.rejected = promutil.Register(reg, m.rejected, &err)
		m.failed = promutil.Register(reg, m.failed, &err)
	}
	return m, err
}
