package grants

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/access"
)

// KafkaACLs reconciles the ACLs of a cluster, as its superuser.
type KafkaACLs struct {
	Kafka []kgo.Opt
}

// Reconcile implements ACLs.
func (k KafkaACLs) Reconcile(ctx context.Context, want []access.ACL) (added, removed []access.ACL, err error) {
	cl, err := kafkaconn.NewClient(k.Kafka)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	return access.Reconcile(ctx, kadm.NewClient(cl), want)
}

// FeedRunner runs the grants' masked feeds, each a feed.Sink driven by a
// pipeline.Runner (exactly once, from the feed's own ledger).
type FeedRunner struct {
	Catalog  *catalog.Catalog
	Kafka    []kgo.Opt
	Registry []sr.ClientOpt
	// Pipeline configures the feeds' runners (Kafka, decoder, metrics).
	Pipeline pipeline.Config
	// KeySecret is the bus's secret the grants' pseudonymous keys derive
	// from (feed.GrantKeySecret).
	KeySecret []byte
	// Prefix begins the feeds' transactional ids (feed.Config.Prefix).
	Prefix string
	// Disputes lists a record's open disputes (feed.Config.Disputes).
	Disputes func(item, key string) []string
	// Started, when set, is told of each feed started (its topics exist):
	// its flags topic is brought in line with the open disputes.
	Started func(ctx context.Context, s *feed.Sink)
	Log     *slog.Logger

	mu    sync.Mutex
	feeds map[string]*feedRun // by grant id
}

// feedRun is a grant's running feed.
type feedRun struct {
	topic  string
	item   string
	sink   *feed.Sink
	cancel context.CancelFunc
	done   chan struct{}
}

// Sync implements Feeds.
func (f *FeedRunner) Sync(ctx context.Context, want map[string]feed.Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.feeds == nil {
		f.feeds = map[string]*feedRun{}
	}
	if f.Log == nil {
		f.Log = slog.New(slog.DiscardHandler)
	}
	for id, run := range f.feeds {
		if _, ok := want[id]; !ok {
			run.stop()
			delete(f.feeds, id)
			f.Log.Info("feed stopped", "topic", run.topic)
		}
	}
	for id, g := range want {
		if _, ok := f.feeds[id]; ok {
			continue
		}
		run, err := f.start(ctx, g)
		if err != nil {
			return err
		}
		f.feeds[id] = run
		f.Log.Info("feed started", "topic", run.topic, "grant", id)
	}
	return nil
}

func (f *FeedRunner) start(ctx context.Context, g feed.Grant) (*feedRun, error) {
	it := f.Catalog.Item(g.Item)
	if len(f.KeySecret) > 0 {
		g.KeySecret = feed.GrantKeySecret(f.KeySecret, g.ID)
	}
	sink, err := feed.New(ctx, feed.Config{Kafka: f.Kafka, Registry: f.Registry, Item: it, Grant: g,
		Topic: f.Catalog.TopicConfig(it), Prefix: f.Prefix, Disputes: f.Disputes, Log: f.Log})
	if err != nil {
		return nil, err
	}
	if err := sink.Prepare(ctx, nil); err != nil {
		sink.Close()
		return nil, err
	}
	if f.Started != nil {
		f.Started(ctx, sink)
	}
	r, err := pipeline.New(f.Pipeline, sink)
	if err != nil {
		sink.Close()
		return nil, err
	}
	fctx, cancel := context.WithCancel(context.Background())
	run := &feedRun{topic: sink.FeedTopic(), item: it.Code, sink: sink, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		defer sink.Close()
		if err := r.Run(fctx); err != nil && !errors.Is(err, context.Canceled) {
			f.Log.Error("feed stopped", "topic", run.topic, "err", err)
		}
	}()
	return run, nil
}

func (r *feedRun) stop() {
	r.cancel()
	<-r.done
}

// Sinks are the running feeds of an item.
func (f *FeedRunner) Sinks(item string) []*feed.Sink {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*feed.Sink
	for _, r := range f.feeds {
		if r.item == item {
			out = append(out, r.sink)
		}
	}
	return out
}

// Close stops every feed.
func (f *FeedRunner) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, run := range f.feeds {
		run.stop()
		delete(f.feeds, id)
	}
}

// sinkRun is a sink running under the pipeline runtime on its own.
type sinkRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// runSink prepares s, then runs it under the pipeline runtime until stop;
// it closes s when it stops. what names it in the log when it fails.
func runSink(ctx context.Context, cfg pipeline.Config, s pipeline.Sink, log *slog.Logger, what string) (*sinkRun, error) {
	if err := s.Prepare(ctx, nil); err != nil {
		s.Close()
		return nil, err
	}
	r, err := pipeline.New(cfg, s)
	if err != nil {
		s.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	run := &sinkRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		defer s.Close()
		if err := r.Run(rctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error(what+" stopped", "sink", s.Name(), "err", err)
		}
	}()
	return run, nil
}

func (r *sinkRun) stop() {
	r.cancel()
	<-r.done
}
