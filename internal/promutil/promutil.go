// Package promutil holds what every metrics-exporting package of Jutong
// needs to share one injected Prometheus registry between several instances
// (runners, publishers, servers) in one process.
package promutil

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg, or returns the collector of the same
// description already there, so that every instance counts into one series
// set. Any other failure (a name registered with other labels or help) is
// joined into *errp, for the constructor to return.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	*errp = errors.Join(*errp, err)
	return c
}

// Lenient is a registerer whose MustRegister skips collectors already
// registered (a component started again in the same process), where the
// plain one would panic.
type Lenient struct{ prometheus.Registerer }

// MustRegister registers what it can.
func (l Lenient) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = l.Register(c)
	}
}

// StageSeconds is the one collector of jutong_stage_seconds_total, which
// the door and the sinks' runners count into (Register it: every instance
// shares it).
func StageSeconds() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jutong_stage_seconds_total",
		Help: "Wall-clock seconds a stage of the bus (door, sink.<name>) spent in each phase: working (decide, decode, write) or waiting (poll: for records; produce, commit: for the brokers). The rate of a phase is the share of the stage's goroutine it takes: its busy ratio."},
		[]string{"stage", "phase"})
}
