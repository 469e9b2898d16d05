package grants

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// LagGauge is the jutong_subscriber_lag_records gauge, registered on reg;
// RefreshLag sets it.
func LagGauge(reg prometheus.Registerer) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "jutong_subscriber_lag_records",
		Help: "Records a department's consumer groups have yet to read, by department and item (feeds counted under their item)."},
		[]string{"department", "item"})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// RefreshLag sets gauge to the departments' lag now (SubscriberLag).
func (r *Reconciler) RefreshLag(ctx context.Context, kafka []kgo.Opt, gauge *prometheus.GaugeVec) error {
	lag, err := r.SubscriberLag(ctx, kafka)
	if err != nil {
		return err
	}
	gauge.Reset()
	for k, n := range lag {
		gauge.WithLabelValues(k.Department, k.Item).Set(float64(n))
	}
	return nil
}

// DeptItem names a department's reads of an item (feeds count under their item).
type DeptItem struct{ Department, Item string }

// SubscriberLag sums, per department and item, the records the departments'
// consumer groups have yet to read, from their committed offsets and the
// topics' ends.
func (r *Reconciler) SubscriberLag(ctx context.Context, kafka []kgo.Opt) (map[DeptItem]int64, error) {
	cl, err := kafkaconn.NewClient(kafka)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	lags, err := adm.Lag(ctx, groups.Groups()...)
	if err != nil {
		return nil, err
	}
	sum := map[DeptItem]int64{}
	for _, gl := range lags {
		// A short lag may be transaction markers only (the door writes in
		// transactions; a client that commits its last record's offset
		// stays behind the marker after it): those spans are read.
		spans := map[string]map[int32]kafkaconn.Span{}
		for _, l := range gl.Lag.Sorted() {
			if l.Lag > 0 && l.Lag <= markerCheck && l.Commit.At >= 0 {
				if spans[l.Topic] == nil {
					spans[l.Topic] = map[int32]kafkaconn.Span{}
				}
				spans[l.Topic][l.Partition] = kafkaconn.Span{From: l.Commit.At, End: l.End.Offset}
			}
		}
		var pending map[string]map[int32]int64
		if len(spans) > 0 {
			if pending, err = kafkaconn.Pending(ctx, kafka, spans, markerCheck, 2*time.Second); err != nil {
				return nil, err
			}
		}
		for _, l := range gl.Lag.Sorted() {
			dept, item, _, ok := r.ResolveRead(gl.Group, l.Topic)
			if !ok {
				continue
			}
			n := l.Lag
			if p, checked := pending[l.Topic][l.Partition]; checked {
				n = p
			}
			sum[DeptItem{dept, item}] += max(0, n)
		}
	}
	return sum, nil
}

// markerCheck is the longest lag read to tell markers from records.
const markerCheck = 64
