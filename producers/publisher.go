package producers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// Publisher publishes one department's change events.
type Publisher struct {
	cfg  cfg
	cat  *catalog.Catalog
	dept string
	cl   *kgo.Client
	reg  *sr.Client
	m    *metrics

	mu       sync.Mutex
	prepared map[string]*prepared // by item code
}

type prepared struct {
	schema *schemas.Schema
	id     int
}

// New creates a publisher for department, which must exist in the catalog,
// reaching the bus through conn.
func New(ctx context.Context, cat *catalog.Catalog, department string, conn connect.Config, opts ...Opt) (*Publisher, error) {
	c := defaultCfg()
	c.conn = conn
	for _, o := range opts {
		o(&c)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if cat.Department(department) == nil {
		return nil, fmt.Errorf("producers: unknown department %q", department)
	}
	kopts := append(c.conn.Kafka(),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 of the key, as Kafka's Java client
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.MaxBufferedRecords(200_000),
	)
	if c.txnID != "" {
		kopts = append(kopts, kgo.TransactionalID(c.txnID), kgo.TransactionTimeout(time.Minute))
	}
	cl, err := kgo.NewClient(append(kopts, c.conn.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("producers: %w", err)
	}
	reg, err := c.conn.RegistryClient()
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("producers: registry: %w", err)
	}
	m, err := newMetrics(c.registerer)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("producers: %w", err)
	}
	return &Publisher{cfg: c, cat: cat, dept: department, cl: cl, reg: reg, m: m, prepared: make(map[string]*prepared)}, nil
}

// prepare finds the item and looks its schema up once.
func (p *Publisher) prepare(ctx context.Context, code string) (*prepared, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr, ok := p.prepared[code]; ok {
		return pr, nil
	}
	it := p.cat.Item(code)
	if it == nil {
		return nil, fmt.Errorf("producers: unknown catalog item %q", code)
	}
	s, err := schemas.For(it)
	if err != nil {
		return nil, err
	}
	// Departments read the registry, they never write it: the bus's admin
	// registers the catalog's schemas (jutong catalog apply).
	ss, err := p.reg.LookupSchema(ctx, it.Subject(), sr.Schema{Schema: s.JSON, Type: sr.TypeAvro})
	var re *sr.ResponseError
	switch {
	case errors.As(err, &re) && (re.ErrorCode == 40401 || re.ErrorCode == 40403):
		return nil, fmt.Errorf("producers: the schema of %s (this catalog's) is not registered under %s: the bus's admin registers it with 'jutong catalog apply': %w", code, it.Subject(), err)
	case err != nil:
		return nil, fmt.Errorf("producers: look up the schema of %s: %w", code, err)
	}
	pr := &prepared{schema: s, id: ss.ID}
	p.prepared[code] = pr
	return pr, nil
}

// NotKeptError is a refusal whose quarantine record could not be written:
// the event was refused at the door (Violation) and, unlike every other
// refusal, is not kept; the caller must retry it or keep it itself. It
// matches both *NotKeptError and *rules.Violation with errors.As.
type NotKeptError struct {
	Violation *rules.Violation
	Err       error // why the quarantine write failed
}

func (e *NotKeptError) Error() string {
	return fmt.Sprintf("producers: %v; the quarantine write failed, the rejected record is NOT kept: %v", e.Violation, e.Err)
}

// Unwrap returns the violation and the write's error.
func (e *NotKeptError) Unwrap() []error { return []error{e.Violation, e.Err} }

// Result is the outcome of publishing one event.
type Result struct {
	Event     *schemas.Event
	Partition int32 // where it landed in the department's inbox
	Offset    int64
	Bytes     int // the size of the record's value on the wire
	// Err is nil when the inbox has it. A *rules.Violation (errors.As)
	// means the client-side check refused it: it was sent all the same and
	// the door keeps it in QuarantineTopic, unless Err is also a
	// *NotKeptError: then the inbox write failed and it is not kept.
	Err error
}

// record checks and encodes one event for the department's inbox; the
// event's source and publish time are filled in here (the door sets them
// again: it, not the client, says who published and when). A refusal is
// returned as a *rules.Violation with a refusal notice to send all the
// same, holding the values as they were given (encoding could change them:
// Avro truncates a decimal with too many places), so that the bus keeps it.
func (p *Publisher) record(pr *prepared, e *schemas.Event) (*kgo.Record, *rules.Violation) {
	e.Source = schemas.Source{Department: p.dept, System: p.cfg.system, Adapter: p.cfg.adapter}
	e.PublishTime = p.cfg.now().UTC().Truncate(1e6)
	if e.EventTime.IsZero() {
		e.EventTime = e.PublishTime
	}
	it := pr.schema.Item
	if v := rules.Check(it, p.dept, e, e.PublishTime); v != nil {
		return refusalRecord(p.dept, it, e, v, e.PublishTime, nil), v
	}
	// Frame first, then append the Avro body: one allocation per record.
	value := schemas.Frame(make([]byte, 0, 512), pr.id, nil)
	value, err := pr.schema.AppendEncode(value, e)
	if err != nil {
		// The checks above make this unreachable for catalog types; keep
		// the record all the same, as a schema violation.
		v := &rules.Violation{Item: it.Code, Key: e.Key, Rule: rules.SchemaEncode, Reason: err.Error()}
		return refusalRecord(p.dept, it, e, v, e.PublishTime, nil), v
	}
	if v := rules.Size(it, len(value), "the record encoded"); v != nil {
		v.Key = e.Key
		return refusalRecord(p.dept, it, e, v, e.PublishTime, value), v
	}
	return &kgo.Record{
		Topic:   topicname.Inbox(p.dept),
		Key:     []byte(e.Key),
		Value:   value,
		Headers: []kgo.RecordHeader{{Key: inbox.HeaderItem, Value: []byte(it.Code)}},
	}, nil
}

// PublishAsync checks and produces events of item to the department's inbox
// without waiting; done is called once per event (from another goroutine)
// with its result, once the inbox has it. The bus's door then forwards it to
// the item's topic, or keeps it in the quarantine. An event this client
// already finds wrong gets its violation as its result (and is sent all the
// same, so that the bus keeps it with its reason).
func (p *Publisher) PublishAsync(ctx context.Context, item string, done func(Result), events ...*schemas.Event) error {
	if done == nil {
		return errors.New("producers: PublishAsync needs a done callback: without one, a failed event would go unnoticed")
	}
	pr, err := p.prepare(ctx, item)
	if err != nil {
		return err
	}
	for _, e := range events {
		rec, v := p.record(pr, e)
		if v != nil {
			p.m.rejected.WithLabelValues(item, p.dept, v.Rule).Inc()
			p.cfg.log.Debug("refused by the client-side check", "item", item, "key", e.Key, "rule", v.Rule, "field", v.Field)
		}
		p.cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			res := Result{Event: e, Partition: r.Partition, Offset: r.Offset, Bytes: len(r.Value), Err: err}
			switch {
			case err != nil && v != nil:
				res.Err = &NotKeptError{Violation: v, Err: err}
			case err != nil:
				p.m.failed.WithLabelValues(item, p.dept).Inc()
			case v != nil:
				res.Err = v
			default:
				p.m.published.WithLabelValues(item, p.dept).Inc()
			}
			done(res)
		})
	}
	return nil
}

// Publish checks and produces events of item and waits until Kafka
// acknowledged each. It returns the per-event results and the errors joined.
func (p *Publisher) Publish(ctx context.Context, item string, events ...*schemas.Event) ([]Result, error) {
	results := make([]Result, len(events))
	var wg sync.WaitGroup
	wg.Add(len(events))
	idx := make(map[*schemas.Event]int, len(events))
	for i, e := range events {
		idx[e] = i
	}
	if err := p.PublishAsync(ctx, item, func(r Result) {
		results[idx[r.Event]] = r
		wg.Done()
	}, events...); err != nil {
		return nil, err
	}
	wg.Wait()
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return results, errors.Join(errs...)
}

// PublishCorrection publishes e, a change of item that corrects the record
// a dispute is about, naming the dispute (the inbox header
// jutong.corrects): once the door accepts it, the dispute waits for it to
// land in every sink and feed, then closes with their receipts. It waits
// for Kafka's acknowledgement. A correction the contract refuses corrects
// nothing: it is kept as any refused event (the quarantine, without the
// dispute) and its violation returned.
func (p *Publisher) PublishCorrection(ctx context.Context, item, dispute string, e *schemas.Event) (Result, error) {
	if dispute == "" {
		return Result{Event: e}, errors.New("producers: PublishCorrection needs the dispute's id")
	}
	pr, err := p.prepare(ctx, item)
	if err != nil {
		return Result{Event: e}, err
	}
	rec, v := p.record(pr, e)
	if v != nil {
		// A correction the contract refuses corrects nothing: its refusal is
		// kept (the quarantine), as any refused event's, without the dispute.
		p.m.rejected.WithLabelValues(item, p.dept, v.Rule).Inc()
	} else {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: inbox.HeaderCorrects, Value: []byte(dispute)})
	}
	if err := p.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		p.m.failed.WithLabelValues(item, p.dept).Inc()
		if v != nil {
			err = &NotKeptError{Violation: v, Err: err}
		}
		return Result{Event: e, Err: err}, err
	}
	if v != nil {
		return Result{Event: e, Partition: rec.Partition, Offset: rec.Offset, Err: v}, v
	}
	p.m.published.WithLabelValues(item, p.dept).Inc()
	return Result{Event: e, Partition: rec.Partition, Offset: rec.Offset, Bytes: len(rec.Value)}, nil
}

// Flush waits until every produced event was acknowledged.
func (p *Publisher) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// Close flushes, for at most the CloseTimeout, and closes the publisher:
// events not acknowledged by then fail (their callbacks get the error).
func (p *Publisher) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.closeFlush)
	defer cancel()
	if err := p.cl.Flush(ctx); err != nil {
		p.cfg.log.Warn("producers: closing with events not acknowledged", "err", err)
	}
	p.cl.Close()
}

// Quarantine keeps an event that an adapter could not even turn into typed
// values (bad JSON, a value of the wrong form): it is sent to the inbox as a
// refusal, with the violation and the raw input, and the door keeps it in
// the quarantine as it does the records it refuses itself.
func (p *Publisher) Quarantine(ctx context.Context, item string, e *schemas.Event, v *rules.Violation, raw []byte) (Result, error) {
	pr, err := p.prepare(ctx, item)
	if err != nil {
		return Result{}, err
	}
	e.Source = schemas.Source{Department: p.dept, System: p.cfg.system, Adapter: p.cfg.adapter}
	now := p.cfg.now().UTC().Truncate(time.Millisecond)
	v.Item = item
	if v.Key == "" {
		v.Key = e.Key
	}
	p.m.rejected.WithLabelValues(item, p.dept, v.Rule).Inc()
	r := refusalRecord(p.dept, pr.schema.Item, e, v, now, raw)
	if err := p.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		lost := &NotKeptError{Violation: v, Err: err}
		return Result{Event: e, Err: lost}, lost
	}
	return Result{Event: e, Partition: r.Partition, Offset: r.Offset, Err: v}, nil
}

// Department is the department the publisher publishes as.
func (p *Publisher) Department() string { return p.dept }

// Reject is an event an adapter could not turn into typed values, to be
// quarantined with its violation and raw input.
type Reject struct {
	Event     *schemas.Event
	Violation *rules.Violation
	Raw       []byte
}

// PublishTx publishes events of item and the rejects to the department's
// inbox, and extra records (an adapter's checkpoint, in the department's
// checkpoints topic) in one Kafka transaction: read_committed consumers, the
// bus's door among them, see all of it or none of it. It needs the
// Transactional option.
// The returned results are in the order of events, then rejects.
func (p *Publisher) PublishTx(ctx context.Context, item string, events []*schemas.Event, rejects []Reject, extra ...*kgo.Record) ([]Result, error) {
	return p.PublishTxCorrecting(ctx, item, events, nil, rejects, extra...)
}

// PublishTxCorrecting is PublishTx where some events correct the records of
// disputes: corrects maps their event ids to the disputes' ids, named on
// their inbox records as PublishCorrection does (an adapter whose source
// table says which change corrects what).
func (p *Publisher) PublishTxCorrecting(ctx context.Context, item string, events []*schemas.Event, corrects map[string]string, rejects []Reject, extra ...*kgo.Record) ([]Result, error) {
	if p.cfg.txnID == "" {
		return nil, errors.New("producers: PublishTx needs the Transactional option")
	}
	pr, err := p.prepare(ctx, item)
	if err != nil {
		return nil, err
	}
	if err := p.cl.BeginTransaction(); err != nil {
		return nil, fmt.Errorf("producers: begin transaction: %w", err)
	}
	results := make([]Result, len(events)+len(rejects))
	var mu sync.Mutex
	var firstErr error
	note := func(i int, r Result, err error) {
		mu.Lock()
		defer mu.Unlock()
		if i >= 0 {
			results[i] = r
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	now := p.cfg.now().UTC().Truncate(time.Millisecond)
	for i, e := range events {
		rec, v := p.record(pr, e)
		if v != nil {
			p.m.rejected.WithLabelValues(item, p.dept, v.Rule).Inc()
		} else if d := corrects[e.ID]; d != "" {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: inbox.HeaderCorrects, Value: []byte(d)})
		}
		p.cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			res := Result{Event: e, Partition: r.Partition, Offset: r.Offset, Bytes: len(r.Value), Err: err}
			if v != nil && err == nil {
				res.Err = v
			}
			note(i, res, err)
		})
	}
	for j, rj := range rejects {
		i := len(events) + j
		rj.Event.Source = schemas.Source{Department: p.dept, System: p.cfg.system, Adapter: p.cfg.adapter}
		rj.Violation.Item = item
		p.m.rejected.WithLabelValues(item, p.dept, rj.Violation.Rule).Inc()
		p.cl.Produce(ctx, refusalRecord(p.dept, pr.schema.Item, rj.Event, rj.Violation, now, rj.Raw), func(r *kgo.Record, err error) {
			res := Result{Event: rj.Event, Partition: r.Partition, Offset: r.Offset, Err: rj.Violation}
			note(i, res, err)
		})
	}
	for _, x := range extra {
		p.cl.Produce(ctx, x, func(_ *kgo.Record, err error) {
			if err != nil {
				note(-1, Result{}, err)
			}
		})
	}
	if err := p.endTx(ctx, func() error { mu.Lock(); defer mu.Unlock(); return firstErr }); err != nil {
		return nil, err
	}
	for _, r := range results[:len(events)] {
		if r.Err == nil {
			p.m.published.WithLabelValues(item, p.dept).Inc()
		}
	}
	return results, nil
}

// endTx flushes the transaction's records and commits it, or aborts it when
// a record failed (failed reports the first failure, once flushed).
func (p *Publisher) endTx(ctx context.Context, failed func() error) error {
	flushErr := p.cl.Flush(ctx)
	err := failed()
	if flushErr != nil && err == nil {
		err = flushErr
	}
	commit := kgo.TryCommit
	if err != nil {
		commit = kgo.TryAbort
	}
	if e := p.cl.EndTransaction(ctx, commit); e != nil && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("producers: transaction aborted, nothing of it is visible: %w", err)
	}
	return nil
}

// Encoded is a change event of an item already encoded (Avro, without the
// framing) with the item's schema as this publisher's catalog has it: what
// a bridge forwards (server/bridge) without decoding it. The door checks
// it as any other record.
type Encoded struct {
	Key     string
	Payload []byte
}

// PublishEncodedTx publishes encoded events of item to the department's
// inbox, framed with the item's registered schema, and extra records, in
// one Kafka transaction, as PublishTx does; the events are not checked
// here (the door does). It needs the Transactional option.
func (p *Publisher) PublishEncodedTx(ctx context.Context, item string, events []Encoded, extra ...*kgo.Record) error {
	if p.cfg.txnID == "" {
		return errors.New("producers: PublishEncodedTx needs the Transactional option")
	}
	pr, err := p.prepare(ctx, item)
	if err != nil {
		return err
	}
	if err := p.cl.BeginTransaction(); err != nil {
		return fmt.Errorf("producers: begin transaction: %w", err)
	}
	var mu sync.Mutex
	var firstErr error
	note := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
	}
	header := []kgo.RecordHeader{{Key: inbox.HeaderItem, Value: []byte(pr.schema.Item.Code)}}
	for _, e := range events {
		value := schemas.Frame(make([]byte, 0, 5+len(e.Payload)), pr.id, e.Payload)
		p.cl.Produce(ctx, &kgo.Record{Topic: topicname.Inbox(p.dept), Key: []byte(e.Key), Value: value, Headers: header}, note)
	}
	for _, x := range extra {
		p.cl.Produce(ctx, x, note)
	}
	if err := p.endTx(ctx, func() error { mu.Lock(); defer mu.Unlock(); return firstErr }); err != nil {
		return err
	}
	p.m.published.WithLabelValues(item, p.dept).Add(float64(len(events)))
	return nil
}
