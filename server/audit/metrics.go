package audit

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jutong/jutong/internal/promutil"
)

// Metrics count what the audit trail says was read, by door: the audit
// dashboard's figures (dashboards/jutong-audit.json); the trail itself
// says who read which record when.
type Metrics struct {
	records *prometheus.CounterVec
}

// NewMetrics registers the audit's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	var err error
	m := &Metrics{records: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "jutong_audited_read_records_total",
		Help: "Records the audit trail says a department read, by door (kafka, lookup, snapshot, postgres, clickhouse), department and item (or table, for the databases).",
	}, []string{"door", "department", "item"}), &err)}
	return m, err
}

// Door is the way in an audited read came by ("" for an event that is no read).
func Door(e Event) string {
	switch e.Kind {
	case Read:
		return "kafka"
	case Lookup:
		return "lookup"
	case Snapshot:
		return "snapshot"
	case OpenDownload, OpenRecords:
		return "open"
	case DBRead:
		db, _, _ := strings.Cut(e.Group, " ")
		return db
	}
	return ""
}

func (m *Metrics) observe(evs []Event) {
	if m == nil {
		return
	}
	for _, e := range evs {
		door := Door(e)
		if door == "" {
			continue
		}
		item := e.Item
		if item == "" && len(e.Keys) > 0 && e.Kind == DBRead {
			item = e.Keys[0]
		}
		m.records.WithLabelValues(door, e.Department, item).Add(float64(max(e.Records, 0)))
	}
}
