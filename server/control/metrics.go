package control

import "github.com/prometheus/client_golang/prometheus"

var (
	appsDesc = prometheus.NewDesc("jutong_applications",
		"Applications (the demand list) by state.", []string{"state"}, nil)
	overdueDesc = prometheus.NewDesc("jutong_applications_overdue",
		"Applications whose review is past its deadline (escalated), by the stage they wait in.", []string{"state"}, nil)
	grantsDesc = prometheus.NewDesc("jutong_grants_active",
		"Grants in force now.", nil, nil)
	intervalDesc = prometheus.NewDesc("jutong_item_update_interval_seconds",
		"The longest an item may go without a change under its update frequency (responsibility list), by item, department and frequency.",
		[]string{"item", "department", "frequency"}, nil)
)

// Collector exports the control state as metrics, read at each scrape.
func (s *Service) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Service }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- appsDesc
	ch <- overdueDesc
	ch <- grantsDesc
	ch <- intervalDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.Lock()
	now := s.cfg.Now()
	byState := map[State]int{AuthorityReview: 0, SourceReview: 0, Granted: 0, Refused: 0, Revoked: 0, Expired: 0}
	overdue := map[State]int{AuthorityReview: 0, SourceReview: 0}
	for _, a := range s.apps {
		byState[a.State]++
		if a.Overdue(now) {
			overdue[a.State]++
		}
	}
	grants := len(s.grantsLocked(now))
	s.mu.Unlock()
	for st, n := range byState {
		ch <- prometheus.MustNewConstMetric(appsDesc, prometheus.GaugeValue, float64(n), string(st))
	}
	for st, n := range overdue {
		ch <- prometheus.MustNewConstMetric(overdueDesc, prometheus.GaugeValue, float64(n), string(st))
	}
	ch <- prometheus.MustNewConstMetric(grantsDesc, prometheus.GaugeValue, float64(grants))
	// The responsibility list's deadlines, for the alert on an item gone quiet.
	for _, it := range s.cfg.Catalog.Items {
		ch <- prometheus.MustNewConstMetric(intervalDesc, prometheus.GaugeValue, it.UpdateInterval().Seconds(), it.Code, it.Source, it.UpdateFrequency)
	}
}
