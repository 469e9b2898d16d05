package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/promutil"
	"github.com/jutong/jutong/internal/retry"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// DeadLetterTopic receives records that can never be written, with the error.
const DeadLetterTopic = topicname.DeadLetter

// Config configures a Runner.
type Config struct {
	// Kafka connects to the cluster: seed brokers, SASL, TLS.
	Kafka []kgo.Opt
	// Registry reaches the schema registry: sr.URLs, sr.BasicAuth,
	// sr.DialTLSConfig.
	Registry []sr.ClientOpt
	Catalog  *catalog.Catalog
	// GroupPrefix prefixes the consumer group: <prefix><sink name>.
	GroupPrefix string
	// InstanceID, when set, gives this pipeline instance static membership
	// of its groups (<InstanceID>.<sink name>): an instance restarted under
	// the same ID, after a crash or a deploy, takes its partitions back at
	// once instead of waiting out the session timeout of its old self.
	InstanceID string
	// MaxBatch bounds the records written in one sink call (default 20000).
	MaxBatch int
	// MaxWait bounds how long a batch waits to fill before it is written (default 100ms).
	MaxWait time.Duration
	// RetryMin and RetryMax bound the backoff while a sink is failing.
	RetryMin, RetryMax time.Duration
	Log                *slog.Logger
	// Metrics is where the runner registers its metrics (none when nil).
	Metrics prometheus.Registerer
	// Decoder, when set, is shared with other runners of the process (one
	// cache of writer schemas instead of one per sink).
	Decoder *schemas.Decoder
	// DecodeCache, when set, is shared with the other runners of the
	// process reading the same topics: a record is decoded once for all of
	// them while they are close (see DecodeCache).
	DecodeCache *DecodeCache
	// LagEvery is how often the lag gauge is refreshed from the topics' ends
	// (default 10s), so that it grows while a batch is held by an outage and
	// no fetch happens.
	LagEvery time.Duration
	// ClientMetrics adds the Kafka client's own metrics (franz-go's kprom,
	// jutong_kafka_*, labelled client="sink.<name>") to Metrics.
	ClientMetrics bool
}

// Validate says what is wrong with the configuration (after its defaults).
func (c Config) Validate() error {
	switch {
	case c.Catalog == nil:
		return errors.New("pipeline: no catalog")
	case len(c.Kafka) == 0:
		return errors.New("pipeline: no Kafka options")
	case c.MaxBatch < 1, c.RetryMin > c.RetryMax:
		return fmt.Errorf("pipeline: MaxBatch %d, RetryMin %s, RetryMax %s: a batch of one record or more, and the least backoff not above the most", c.MaxBatch, c.RetryMin, c.RetryMax)
	}
	return nil
}

func (c *Config) defaults() {
	if c.GroupPrefix == "" {
		c.GroupPrefix = "jutong.sink."
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 20000
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 100 * time.Millisecond
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.LagEvery <= 0 {
		c.LagEvery = 10 * time.Second
	}
}

// Runner moves records from the item topics into one sink.
type Runner struct {
	cfg   Config
	sink  Sink
	items map[string]*catalog.Item // by topic
	dec   *schemas.Decoder
	log   *slog.Logger
	m     *metrics
	// hw and pos are the partitions' high watermarks at the last fetch and
	// the runner's positions, for the lag gauge; lastPub the newest publish
	// time landed per item.
	statMu  sync.Mutex
	hw      map[tp]int64
	pos     map[tp]int64
	lastPub map[*catalog.Item]time.Time

	runCtx context.Context // set by Run; bounds work done in client callbacks
	cache  *CacheReader    // set by Run when the runner shares a DecodeCache
	raw    bool            // a TopicSink: records are passed undecoded
	// columnar: a ColumnSink, decoded into cols (one per item, reused from
	// batch to batch).
	columnar bool
	cols     schemas.ColumnSet
}

// New creates a runner for sink over the catalog items it accepts.
func New(cfg Config, sink Sink) (*Runner, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dec := cfg.Decoder
	if dec == nil {
		reg, err := sr.NewClient(cfg.Registry...)
		if err != nil {
			return nil, fmt.Errorf("pipeline: registry: %w", err)
		}
		dec = schemas.NewDecoder(reg)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	r := &Runner{cfg: cfg, sink: sink, dec: dec, items: make(map[string]*catalog.Item),
		log: cfg.Log.With("sink", sink.Name()), m: m,
		hw: map[tp]int64{}, pos: map[tp]int64{}, lastPub: map[*catalog.Item]time.Time{}}
	if cs, ok := sink.(ColumnSink); ok && cs.WritesColumns() {
		r.columnar, r.cols = true, schemas.ColumnSet{}
	}
	if ts, ok := sink.(TopicSink); ok {
		r.raw = true
		for _, t := range ts.Topics() {
			r.items[t] = &catalog.Item{Code: t, Source: "jutong"} // a stand-in: the topic is no item
		}
	} else {
		for _, it := range cfg.Catalog.Items {
			if sink.Accepts(it) {
				r.items[it.Topic()] = it
			}
		}
	}
	if len(r.items) == 0 {
		return nil, fmt.Errorf("pipeline: sink %s accepts no catalog item", sink.Name())
	}
	// Every series exists from the start, at zero: a dashboard shows 0, not
	// "no data", and rate() sees the first increment.
	for _, it := range r.items {
		r.m.landed.WithLabelValues(sink.Name(), it.Code, it.Source)
		r.m.dead.WithLabelValues(sink.Name(), it.Code)
	}
	for _, op := range []string{"prepare", "read ledger", "decode", "write", "dead-letter"} {
		r.m.retries.WithLabelValues(sink.Name(), op)
	}
	r.m.failing.WithLabelValues(sink.Name()).Set(0)
	r.m.lag.WithLabelValues(sink.Name())
	return r, nil
}

// Group is the runner's consumer group.
func (r *Runner) Group() string { return r.cfg.GroupPrefix + r.sink.Name() }

// Topics lists the topics the runner reads.
func (r *Runner) Topics() []string {
	out := make([]string, 0, len(r.items))
	for t := range r.items {
		out = append(out, t)
	}
	return out
}

// Run prepares the sink and moves records until ctx is done. On return the
// open batch has either been written or abandoned; nothing is lost, since
// the ledger only moves with written data.
func (r *Runner) Run(ctx context.Context) error {
	r.runCtx = ctx
	if c := r.cfg.DecodeCache; c != nil && !r.columnar {
		r.cache = c.Join(r.Topics())
		defer r.cache.Leave()
	}
	items := make([]*catalog.Item, 0, len(r.items))
	for _, it := range r.items {
		items = append(items, it)
	}
	if err := r.retry(ctx, "prepare", func() error { return r.sink.Prepare(ctx, items) }); err != nil {
		return err
	}
	opts := []kgo.Opt{}
	if r.cfg.ClientMetrics && r.cfg.Metrics != nil {
		opts = append(opts, kgo.WithHooks(kprom.NewMetrics("jutong_kafka", kprom.Registerer(promutil.Lenient{Registerer: r.cfg.Metrics}),
			kprom.WithStaticLabel(prometheus.Labels{"client": "sink." + r.sink.Name()}))))
	}
	if r.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(r.cfg.InstanceID+"."+r.sink.Name()))
	}
	cl, err := kafkaconn.NewClient(r.cfg.Kafka, append(opts,
		kgo.ConsumerGroup(r.Group()),
		kgo.ConsumeTopics(r.Topics()...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers take offsets too: seen, they let the lag
		// gauge pass them (markers), else it never returns to 0.
		kgo.KeepControlRecords(),
		kgo.AdjustFetchOffsetsFn(r.resumeFromLedger),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) {
			// Informational only: lets kafka tooling show this group's lag.
			_ = cl.CommitUncommittedOffsets(ctx)
		}),
	)...)
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	dlq, err := kafkaconn.NewClient(r.cfg.Kafka, kgo.DefaultProduceTopic(DeadLetterTopic))
	if err != nil {
		cl.Close()
		return err
	}
	defer func() {
		dlq.Close()
		// A poll blocks rebalances until allowed; leaving the group is one.
		cl.AllowRebalance()
		cl.Close() // leaves the group
	}()
	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	go r.refreshLag(lagCtx)
	r.log.Info("pipeline running", "group", r.Group(), "topics", len(r.items))
	stage := "sink." + r.sink.Name()
	pollSec, decodeSec, writeSec := r.m.stage.WithLabelValues(stage, "poll"), r.m.stage.WithLabelValues(stage, "decode"), r.m.stage.WithLabelValues(stage, "write")
	for {
		tPoll := time.Now()
		fs := cl.PollRecords(ctx, r.cfg.MaxBatch)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		recs, marks := splitMarkers(fs.Records(), nil)
		r.watermarks(fs)
		// Give a small batch a moment to fill: fewer, larger transactions.
		if len(recs) > 0 && len(recs) < r.cfg.MaxBatch/4 {
			wctx, cancel := context.WithTimeout(ctx, r.cfg.MaxWait)
			more := cl.PollRecords(wctx, r.cfg.MaxBatch-len(recs))
			cancel()
			r.watermarks(more)
			var mrecs []*kgo.Record
			mrecs, marks = splitMarkers(more.Records(), marks)
			recs = append(recs, mrecs...)
		}
		if len(recs) == 0 {
			pollSec.Add(time.Since(tPoll).Seconds())
			r.passMarkers(marks)
			cl.AllowRebalance()
			continue
		}
		tDecode := time.Now()
		pollSec.Add(tDecode.Sub(tPoll).Seconds())
		var batch []Record
		if r.raw {
			batch = r.undecoded(recs)
		} else if batch, err = r.decode(ctx, dlq, recs); err != nil {
			cl.AllowRebalance()
			return err
		}
		t0 := time.Now()
		decodeSec.Add(t0.Sub(tDecode).Seconds())
		landed := t0.UTC()
		if err := r.retry(ctx, "write", func() error { landed = time.Now().UTC(); return r.write(ctx, dlq, batch, landed) }); err != nil {
			cl.AllowRebalance()
			return nil // ctx done: the batch is abandoned, the ledger did not move
		}
		r.observe(batch, landed, time.Since(t0))
		writeSec.Add(time.Since(t0).Seconds())
		r.passMarkers(marks)
		// Informational (lag for Kafka tooling); the ledger is the truth.
		cl.CommitUncommittedOffsets(ctx) //nolint:errcheck
		cl.AllowRebalance()
	}
}

// write writes a batch; when the sink blames records (a RecordFault), it
// writes halves until each refused record is alone, dead-letters it and
// passes it, so that the others land and the partition moves on. Halves are
// written in order, so per-key order holds; an outage part-way is retried
// from the start, the sink's ledger skipping what landed.
func (r *Runner) write(ctx context.Context, dlq *kgo.Client, batch []Record, landed time.Time) error {
	err := r.sink.Write(ctx, batch, landed)
	if err == nil || !IsRecordFault(err) {
		return err
	}
	if len(batch) > 1 {
		mid := len(batch) / 2
		if err := r.write(ctx, dlq, batch[:mid], landed); err != nil {
			return err
		}
		return r.write(ctx, dlq, batch[mid:], landed)
	}
	rec := batch[0]
	r.log.Error("dead-lettering a record the sink refuses", "topic", rec.Item.Topic(), "partition", rec.Partition, "offset", rec.Offset, "err", err)
	if rec.Raw != nil {
		if perr := dlq.ProduceSync(ctx, deadLetter(rec.Raw, r.sink.Name(), err)).FirstErr(); perr != nil {
			return perr // retried: the record is not passed before it is kept
		}
	}
	r.m.dead.WithLabelValues(r.sink.Name(), rec.Item.Code).Inc()
	rec.Event, rec.DeadLetter = nil, err.Error()
	return r.sink.Write(ctx, []Record{rec}, landed)
}

// refreshLag reads the topics' ends every LagEvery and updates the lag
// gauge: fetches stop while a batch waits for a database that is down, and
// the records piling up must show all the same.
func (r *Runner) refreshLag(ctx context.Context) {
	admin, err := kafkaconn.NewClient(r.cfg.Kafka)
	if err != nil {
		return
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	t := time.NewTicker(r.cfg.LagEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The last stable offsets: records of a transaction still open
		// are not yet there to write.
		ends, err := adm.ListCommittedOffsets(ctx, r.Topics()...)
		if err != nil {
			continue
		}
		r.statMu.Lock()
		ends.Each(func(o kadm.ListedOffset) {
			k := tp{o.Topic, o.Partition}
			_, fetched := r.hw[k]
			_, written := r.pos[k]
			if o.Err == nil && (fetched || written) { // this instance's partitions only
				r.hw[k] = max(r.hw[k], o.Offset)
			}
		})
		r.updateLag()
		r.statMu.Unlock()
	}
}

// watermarks notes each fetched partition's high watermark, for the lag.
func (r *Runner) watermarks(fs kgo.Fetches) {
	r.statMu.Lock()
	defer r.statMu.Unlock()
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		end := p.HighWatermark
		if p.LastStableOffset >= 0 { // read_committed: records past it are not yet readable
			end = p.LastStableOffset
		}
		if p.Err == nil && end >= 0 {
			r.hw[tp{p.Topic, p.Partition}] = end
		}
	})
	r.updateLag()
}

type tp struct {
	topic string
	part  int32
}

// observe counts a written batch.
func (r *Runner) observe(batch []Record, landed time.Time, took time.Duration) {
	name := r.sink.Name()
	r.statMu.Lock()
	defer r.statMu.Unlock()
	r.m.batch.WithLabelValues(name).Observe(float64(len(batch)))
	r.m.duration.WithLabelValues(name).Observe(took.Seconds())
	lat, evLat := r.m.latency.WithLabelValues(name), r.m.eventLat.WithLabelValues(name)
	counts := map[*catalog.Item]int{}
	newest := map[*catalog.Item]time.Time{}
	for _, rec := range batch {
		k := tp{rec.Item.Topic(), rec.Partition}
		r.pos[k] = max(r.pos[k], rec.Offset+1)
		if r.raw && rec.DeadLetter == "" {
			counts[rec.Item]++
		}
		if rec.Event == nil {
			continue
		}
		counts[rec.Item]++
		lat.Observe(landed.Sub(rec.Event.PublishTime).Seconds())
		evLat.Observe(landed.Sub(rec.Event.EventTime).Seconds())
		if rec.Event.PublishTime.After(newest[rec.Item]) {
			newest[rec.Item] = rec.Event.PublishTime
		}
	}
	for it, n := range counts {
		r.m.landed.WithLabelValues(name, it.Code, it.Source).Add(float64(n))
	}
	for it, t := range newest {
		if t.After(r.lastPub[it]) {
			r.lastPub[it] = t
			r.m.lastPub.WithLabelValues(it.Code, it.Source).Set(float64(t.UnixMilli()) / 1000)
		}
	}
	r.updateLag()
}

// splitMarkers puts the transaction markers (control records) of recs
// apart, appended to marks; the data records keep their order.
func splitMarkers(recs, marks []*kgo.Record) (data, _ []*kgo.Record) {
	data = recs[:0]
	for _, kr := range recs {
		if kr.Attrs.IsControl() {
			marks = append(marks, kr)
		} else {
			data = append(data, kr)
		}
	}
	return data, marks
}

// passMarkers moves the lag's positions past the transaction markers of a
// poll once its data records are written: a marker is no record to write,
// and every record before it on its partition has been (batches are written
// in poll order). The ledger does not move: on a restart the consumer skips
// the marker again and this runs again.
func (r *Runner) passMarkers(marks []*kgo.Record) {
	if len(marks) == 0 {
		return
	}
	r.statMu.Lock()
	defer r.statMu.Unlock()
	for _, kr := range marks {
		k := tp{kr.Topic, kr.Partition}
		r.pos[k] = max(r.pos[k], kr.Offset+1)
	}
	r.updateLag()
}

// updateLag sets the lag gauge (statMu held).
func (r *Runner) updateLag() {
	var lag int64
	for k, hw := range r.hw {
		if p, ok := r.pos[k]; ok {
			lag += max(0, hw-p)
		} else {
			lag += hw // nothing written yet on this partition (an upper bound)
		}
	}
	r.m.lag.WithLabelValues(r.sink.Name()).Set(float64(lag))
}

// resumeFromLedger replaces Kafka's committed offsets with the sink's ledger.
func (r *Runner) resumeFromLedger(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	// Stop waiting for the sink when either the group session or the runner ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.runCtx, cancel)
	defer stop()
	topics := make([]string, 0, len(assigned))
	for t := range assigned {
		topics = append(topics, t)
	}
	var ledger Offsets
	err := r.retry(ctx, "read ledger", func() (err error) {
		ledger, err = r.sink.Offsets(ctx, topics)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.statMu.Lock()
	for t, parts := range assigned {
		for p := range parts {
			if next, ok := ledger[t][p]; ok {
				parts[p] = kgo.NewOffset().At(next).WithEpoch(-1)
				r.pos[tp{t, p}] = next
			} else {
				parts[p] = kgo.NewOffset().AtStart()
			}
		}
	}
	r.statMu.Unlock()
	r.log.Info("resuming from the sink's ledger", "partitions", len(topics))
	return assigned, nil
}

// retry calls fn until it succeeds or ctx is done, backing off exponentially;
// the sink is "failing" (a gauge, a log line per attempt) meanwhile.
func (r *Runner) retry(ctx context.Context, what string, fn func() error) error {
	attempts, err := retry.Do(ctx, retry.Backoff{Min: r.cfg.RetryMin, Max: r.cfg.RetryMax}, fn, func(attempt int, err error, wait time.Duration) {
		r.m.retries.WithLabelValues(r.sink.Name(), what).Inc()
		r.m.failing.WithLabelValues(r.sink.Name()).Set(1)
		r.log.Warn("sink failing, will retry", "op", what, "attempt", attempt, "backoff", wait, "err", err)
	})
	if err == nil && attempts > 1 {
		r.log.Info("sink recovered", "op", what, "attempts", attempts)
		r.m.failing.WithLabelValues(r.sink.Name()).Set(0)
	}
	return err
}

// decode turns Kafka records into sink records; undecodable ones are sent to
// the dead-letter topic and passed on without an event. A registry that does
// not answer is retried, never taken for a bad record.
func (r *Runner) decode(ctx context.Context, dlq *kgo.Client, recs []*kgo.Record) ([]Record, error) {
	out := make([]Record, len(recs))
	var dead []*kgo.Record
	var shared, decoded int
	defer func() {
		r.m.decodes.WithLabelValues(r.sink.Name(), "shared").Add(float64(shared))
		r.m.decodes.WithLabelValues(r.sink.Name(), "decoded").Add(float64(decoded))
	}()
	var envs []schemas.Event // a column sink's envelopes, allocated at once
	if r.columnar {
		r.cols.Reset()
		envs = make([]schemas.Event, len(recs))
	}
	one := func(i int) error {
		kr := recs[i]
		var ev *schemas.Event
		var bad *schemas.RecordError
		var cols *schemas.Columns
		if r.columnar {
			cols = r.cols.Of(out[i].Item)
		}
		err := r.retry(ctx, "decode", func() (err error) {
			if cols != nil {
				if err = r.dec.DecodeColumns(ctx, cols, kr.Value); err == nil {
					ev = &envs[i]
					cols.EnvelopeInto(ev, cols.N-1)
				}
			} else {
				ev, err = r.dec.Decode(ctx, kr.Value)
			}
			if errors.As(err, &bad) {
				return nil // retrying will not help
			}
			return err
		})
		if (err != nil || bad != nil) && r.cache != nil {
			r.cache.release(kr)
		}
		if err != nil {
			return err // ctx done
		}
		if bad != nil {
			r.log.Error("dead-lettering record", "topic", kr.Topic, "partition", kr.Partition, "offset", kr.Offset, "err", bad)
			if it := r.items[kr.Topic]; it != nil {
				r.m.dead.WithLabelValues(r.sink.Name(), it.Code).Inc()
			}
			dead = append(dead, deadLetter(kr, r.sink.Name(), bad))
			out[i].DeadLetter = bad.Error()
			return nil
		}
		out[i].Event = ev
		if cols != nil {
			out[i].Cols, out[i].Row = cols, cols.N-1
		}
		decoded++
		if r.cache != nil {
			r.cache.put(kr, ev)
		}
		return nil
	}
	// First the records no other runner has or is decoding; those another
	// runner is decoding right now are taken from it afterwards.
	var later []int
	for i, kr := range recs {
		out[i] = Record{Item: r.items[kr.Topic], Partition: kr.Partition, Offset: kr.Offset, Raw: kr}
		if IsLegacyFlag(kr) {
			continue // a legacy dispute flag, not a change: only the ledger moves
		}
		if r.cache != nil {
			switch ev, st := r.cache.take(kr); st {
			case cacheHit:
				out[i].Event = ev
				shared++
				continue
			case cacheBusy:
				later = append(later, i)
				continue
			}
		}
		if err := one(i); err != nil {
			return nil, err
		}
	}
	for _, i := range later {
		if ev := r.cache.wait(recs[i]); ev != nil {
			out[i].Event = ev
			shared++
			continue
		}
		if err := one(i); err != nil { // the other failed to decode it, or lost the slot
			return nil, err
		}
	}
	if len(dead) > 0 {
		if err := r.retry(ctx, "dead-letter", func() error { return dlq.ProduceSync(ctx, dead...).FirstErr() }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// undecoded turns the records of a TopicSink's topics into sink records.
func (r *Runner) undecoded(recs []*kgo.Record) []Record {
	out := make([]Record, len(recs))
	for i, kr := range recs {
		out[i] = Record{Item: r.items[kr.Topic], Partition: kr.Partition, Offset: kr.Offset, Raw: kr}
	}
	return out
}

// IsLegacyFlag says whether a record of an item's topic is a legacy dispute
// flag record, or the tombstone an upgrade writes over one (flags have their
// own topics now, docs/upgrading.md): no change event, so sinks pass it.
func IsLegacyFlag(kr *kgo.Record) bool {
	for _, h := range kr.Headers {
		if schemas.IsLegacyFlag(h.Key, h.Value) {
			return true
		}
	}
	return false
}

func deadLetter(kr *kgo.Record, sink string, err error) *kgo.Record {
	return &kgo.Record{
		Topic: DeadLetterTopic,
		Key:   kr.Key,
		Value: kr.Value,
		Headers: []kgo.RecordHeader{
			{Key: "jutong.error", Value: []byte(err.Error())},
			{Key: "jutong.sink", Value: []byte(sink)},
			{Key: "jutong.origin.topic", Value: []byte(kr.Topic)},
			{Key: "jutong.origin.partition", Value: []byte(strconv.Itoa(int(kr.Partition)))},
			{Key: "jutong.origin.offset", Value: []byte(strconv.FormatInt(kr.Offset, 10))},
		},
	}
}
