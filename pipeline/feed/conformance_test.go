package feed_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/pipeline/sinktest"
	"github.com/jutong/jutong/schemas"
)

// TestConformance runs the sink conformance suite on a grant's feed: a
// grant at grade 1 that masks two fields of enterprise registrations. The
// "database" is the feed topic, read back (read-committed) and decoded; a
// key's state is the change its last feed record projects (its origin offset
// header), and a DELETE removes it.
func TestConformance(t *testing.T) {
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	reg, err := sr.NewClient(b.RegistryOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	dec := schemas.NewDecoder(reg)
	it := cat.Item("legal_person.enterprise_registration")

	var mu sync.Mutex
	topics := map[pipeline.Sink]string{}
	// read returns the last feed record of each key, and whether it is live.
	read := func(ctx context.Context, s pipeline.Sink) (map[string]*schemas.Event, map[string]int64, error) {
		mu.Lock()
		topic := topics[s]
		mu.Unlock()
		last, origin := map[string]*schemas.Event{}, map[string]int64{}
		var derr error
		err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), topic, func(r *kgo.Record) {
			ev, err := dec.Decode(ctx, r.Value)
			if err != nil {
				derr = err
				return
			}
			for _, h := range r.Headers {
				if h.Key == feed.OriginOffset {
					origin[string(r.Key)], _ = strconv.ParseInt(string(h.Value), 10, 64)
				}
			}
			last[string(r.Key)] = ev
		})
		if err == nil {
			err = derr
		}
		return last, origin, err
	}
	sinktest.Run(t, sinktest.Harness{
		Items: []*catalog.Item{it},
		Database: func(t *testing.T) func() pipeline.Sink {
			var id [4]byte
			_, _ = rand.Read(id[:])
			// Every field approved (the one the suite adds mid-stream too),
			// at grade 1: legal_representative_id and employees are masked.
			fields := []string{"sinktest_remark"}
			for _, f := range it.Fields {
				fields = append(fields, f.Name)
			}
			g := feed.Grant{ID: "g" + hex.EncodeToString(id[:]), Department: "tax", Item: it.Code, Fields: fields, Grade: 1}
			return func() pipeline.Sink {
				s, err := feed.New(context.Background(), feed.Config{Kafka: b.KafkaOpts(), Registry: b.RegistryOpts(),
					Item: it, Grant: g, Topic: cat.TopicConfig(it)})
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				topics[s] = topicname.Feed(g.Department, it.Code, g.ID)
				mu.Unlock()
				return s
			}
		},
		State: func(ctx context.Context, s pipeline.Sink, it *catalog.Item) (map[string]int64, error) {
			last, origin, err := read(ctx, s)
			out := map[string]int64{}
			for k, ev := range last {
				if ev.Op != schemas.OpDelete {
					out[k] = origin[k]
				}
				// The grant's grade masks these: the feed must never carry them.
				if v := ev.Data["employees"]; v != nil && v != "***" {
					t.Errorf("key %s: employees %v reached the feed unmasked", k, v)
				}
			}
			return out, err
		},
		Field: func(ctx context.Context, s pipeline.Sink, it *catalog.Item, key, field string) (string, error) {
			last, _, err := read(ctx, s)
			if ev := last[key]; ev != nil && ev.Data[field] != nil {
				return fmt.Sprint(ev.Data[field]), err
			}
			return "", err
		},
	})
}
