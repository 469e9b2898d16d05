package dispute

import "github.com/prometheus/client_golang/prometheus"

var (
	disputesDesc = prometheus.NewDesc("jutong_disputes",
		"Disputes of shared records by state (open, correcting, corrected, rejected) and the source department answering them.", []string{"state", "source"}, nil)
	overdueDesc = prometheus.NewDesc("jutong_disputes_overdue",
		"Open disputes past their deadline (escalated), by source department.", []string{"source"}, nil)
	unlandedDesc = prometheus.NewDesc("jutong_disputes_unlanded",
		"Corrections named by their source that have not landed in every sink within the bound, by source department.", []string{"source"}, nil)
)

// Collector exports the disputes as metrics, read at each scrape.
func (s *Service) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Service }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- disputesDesc
	ch <- overdueDesc
	ch <- unlandedDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	type key struct{ state, source string }
	byState := map[key]int{}
	overdue, unlanded := map[string]int{}, map[string]int{}
	s.mu.Lock()
	now := s.cfg.Now()
	for _, d := range s.cfg.Catalog.Departments {
		overdue[d.Code], unlanded[d.Code] = 0, 0
		byState[key{string(Pending), d.Code}] = 0
	}
	for _, d := range s.all {
		byState[key{string(d.State), d.Source}]++
		if d.State == Pending && now.After(d.Due) {
			overdue[d.Source]++
		}
		if d.State == Correcting && d.Unlanded {
			unlanded[d.Source]++
		}
	}
	s.mu.Unlock()
	for k, n := range byState {
		ch <- prometheus.MustNewConstMetric(disputesDesc, prometheus.GaugeValue, float64(n), k.state, k.source)
	}
	for src, n := range overdue {
		ch <- prometheus.MustNewConstMetric(overdueDesc, prometheus.GaugeValue, float64(n), src)
	}
	for src, n := range unlanded {
		ch <- prometheus.MustNewConstMetric(unlandedDesc, prometheus.GaugeValue, float64(n), src)
	}
}
