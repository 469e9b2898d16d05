package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// Record is one consumed record as a sink sees it.
type Record struct {
	Item      *catalog.Item
	Partition int32
	Offset    int64
	// Event is the decoded change event; nil for a record that was
	// dead-lettered or that is no change (a legacy dispute flag record,
	// IsLegacyFlag), which the sink must only count in its ledger.
	Event *schemas.Event
	// DeadLetter is why the record was dead-lettered (when Event is nil;
	// empty for a flag record).
	DeadLetter string
	// Raw is the record as read from Kafka, for the dead-letter topic.
	Raw *kgo.Record
	// Cols, for a ColumnSink, holds the record's fields, at row Row: the
	// runner decodes a batch into one schemas.Columns per item, and Event
	// carries the envelope only (its Data is nil whatever the op). Records
	// a sink is handed otherwise (a replay) have Cols nil and Event whole.
	Cols *schemas.Columns
	Row  int
}

// Data is the record's value of field j of its item (the item's Fields
// order), from the columns or the event, as Event.Data holds it.
func (r *Record) Data(j int) any {
	if r.Cols != nil {
		return r.Cols.Value(j, r.Row)
	}
	if r.Event == nil || r.Event.Data == nil {
		return nil
	}
	return r.Event.Data[r.Item.Fields[j].Name]
}

// RecordFault is a sink's error that blames the records, not the database:
// the database refused them for what they hold (a value it cannot store, a
// constraint), so that writing them again can never succeed. The runner
// then finds the refused records (it writes halves of the batch until one
// record is left), sends each to the dead-letter topic and passes it; an
// error that is not a RecordFault is an outage, retried without limit. In
// the spirit of franz-go's kerr.Error.Retriable.
type RecordFault struct{ Err error }

func (e *RecordFault) Error() string { return "record refused by the sink: " + e.Err.Error() }
func (e *RecordFault) Unwrap() error { return e.Err }

// IsRecordFault reports whether err blames the records (a *RecordFault).
func IsRecordFault(err error) bool {
	var rf *RecordFault
	return errors.As(err, &rf)
}

// Offsets maps topic -> partition -> the next offset to read.
type Offsets map[string]map[int32]int64

// Sink is where a Runner writes. Write must apply the records and advance the
// sink's ledger atomically, and must ignore records at offsets its ledger has
// already passed (a redelivered batch changes nothing).
type Sink interface {
	// Name identifies the sink; the consumer group is derived from it.
	Name() string
	// Accepts says whether the sink receives the item (the catalog routes items).
	Accepts(it *catalog.Item) bool
	// Prepare creates or evolves what the sink needs for items (tables, ledger).
	Prepare(ctx context.Context, items []*catalog.Item) error
	// Offsets reads the ledger for the given topics.
	Offsets(ctx context.Context, topics []string) (Offsets, error)
	// Write applies a batch; landed is the landing time to record.
	Write(ctx context.Context, batch []Record, landed time.Time) error
	Close() error
}

// ColumnSink is a Sink that writes from columns (Record.Cols): the runner
// decodes its batches straight into typed vectors, no map per record.
type ColumnSink interface {
	Sink
	// WritesColumns is true when the sink reads Record.Cols.
	WritesColumns() bool
}

// TopicSink is a Sink of topics of its own rather than of the catalog's items
// (the ClickHouse copies of the audit trail, the quarantine and the
// disputes): the runner reads the topics it names and hands it their
// records undecoded (Record.Raw; Record.Event nil; Record.Item a stand-in
// whose code is the topic), under the same exactly-once rules (its ledger,
// its retries, its dead letters, its metrics).
type TopicSink interface {
	Sink
	// Topics lists the topics the sink copies.
	Topics() []string
}

// Locator and Ledgerer are optional capabilities of a Sink: what it holds,
// asked without disturbing its runner (unlike Offsets, which readies the
// sink to resume). The disputes' receipts ask them where a correction
// landed.
type Locator interface {
	// Landed says where the change with the event id of item landed in
	// the sink; found is false when the sink does not hold it (not yet,
	// never, or no more: a later change of its key replaced it).
	Landed(ctx context.Context, it *catalog.Item, eventID string) (l Landed, found bool, err error)
}

// LedgerReader is an optional capability of a Sink: its ledger for the
// topics, read without readying the sink to resume from it (what Offsets
// does), so that a caller other than its runner (the lag, while the runner
// writes) cannot set the sink back.
type LedgerReader interface {
	ReadLedger(ctx context.Context, topics []string) (Offsets, error)
}

// ReadLedger reads s's ledger without disturbing its runner: through
// LedgerReader when s has it; else Offsets, which then must not keep state.
func ReadLedger(ctx context.Context, s Sink, topics []string) (Offsets, error) {
	if lr, ok := s.(LedgerReader); ok {
		return lr.ReadLedger(ctx, topics)
	}
	return s.Offsets(ctx, topics)
}

// Ledgerer: see Locator.
type Ledgerer interface {
	// Ledger is how far the sink has read item's topic: the next offset of
	// each partition it has written.
	Ledger(ctx context.Context, it *catalog.Item) (map[int32]int64, error)
}

// Landed is where a change landed in a sink.
type Landed struct {
	Partition int32
	Offset    int64
	At        time.Time // when the sink wrote it (zero: the sink does not say)
	Key       string    // the record's key, as the sink holds it
}
