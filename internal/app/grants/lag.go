package grants

import (
	"context"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

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
		for _, l := range gl.Lag.Sorted() {
			if dept, item, _, ok := r.ResolveRead(gl.Group, l.Topic); ok {
				sum[DeptItem{dept, item}] += l.Lag
			}
		}
	}
	return sum, nil
}
