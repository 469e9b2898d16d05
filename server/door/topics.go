package door

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
)

// topicSet knows which item topics exist, so that a record of an item whose
// topic was never created (catalog apply not run yet) is refused with its
// reason instead of failing, again and again, the transaction of everyone's
// records. A topic not known is looked up at most once a second.
type topicSet struct {
	kafka []kgo.Opt

	mu     sync.Mutex
	have   map[string]bool
	listed time.Time
}

func (s *topicSet) exists(ctx context.Context, topic string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.have[topic] || time.Since(s.listed) < time.Second {
		return s.have[topic], nil
	}
	cl, err := kafkaconn.NewClient(s.kafka)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	listed, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return false, err
	}
	for _, t := range listed.Names() {
		s.have[t] = true
	}
	s.listed = time.Now()
	return s.have[topic], nil
}
