package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/dispute"
)

// demoDispute plays a dispute after the subscribers: tax, which now reads
// enterprise registrations, disputes one's registered capital; market
// supervision publishes the corrected record, naming the dispute; the dispute
// closes once PostgreSQL and ClickHouse have landed it, with their
// receipts. It prints where to see it.
func demoDispute(ctx context.Context, out io.Writer, st *stack.Stack) error {
	const item = "legal_person.enterprise_registration"
	it := st.Catalog.Item(item)
	if it == nil || st.Bus.Disputes == nil {
		return nil // another catalog
	}
	var key, text string
	var data map[string]any
	if err := st.PGPool.QueryRow(ctx, "SELECT uscc, registered_capital::text FROM legal_person.enterprise_registration ORDER BY uscc LIMIT 1").Scan(&key, &text); err != nil {
		return fmt.Errorf("demo dispute: %w", err)
	}
	capital, ok := new(big.Rat).SetString(text)
	if !ok {
		return fmt.Errorf("demo dispute: registered capital %q", text)
	}
	d, err := st.Bus.Disputes.Raise(ctx, "tax", dispute.Request{Item: item, Key: key, Fields: []string{"registered_capital"},
		Claim: "注册资本应为 " + new(big.Rat).Add(capital, big.NewRat(100, 1)).FloatString(4) + " 万元", Evidence: "2026 年度纳税申报表"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nA dispute (疑义) and its correction\n  tax disputes %s %s (registered_capital): %s, due %s\n", item, key, d.ID, d.Due.Format("2006-01-02"))
	// The source publishes the corrected record (the rest as it stands).
	pub, err := producers.New(ctx, st.Catalog, it.Source, st.Bus.Conn(it.Source), producers.System("企业登记系统"))
	if err != nil {
		return err
	}
	defer pub.Close()
	data, err = currentRecord(ctx, st, it, key)
	if err != nil {
		return err
	}
	data["registered_capital"] = new(big.Rat).Add(capital, big.NewRat(100, 1))
	fix := &schemas.Event{ID: uuid.NewString(), Op: schemas.OpUpdate, Key: key, Data: data, EventTime: time.Now()}
	// The correcting change names the dispute; the door, accepting it,
	// tells the dispute, which then waits for every sink and feed.
	if _, err := pub.PublishCorrection(ctx, item, d.ID, fix); err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); d.State != dispute.Corrected && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err := st.Bus.Disputes.Tick(ctx); err != nil {
			return err
		}
		if d, err = st.Bus.Disputes.Get(it.Source, d.ID); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "  market_supervision corrects it (event %s): %s, in time %v\n", fix.ID, d.State, d.InTime)
	for _, r := range d.Receipts {
		fmt.Fprintf(out, "    receipt %-10s %s partition %d offset %d, landed %s\n", r.Sink, r.Topic, r.Partition, r.Offset, r.Landed.Format(time.RFC3339))
	}
	fmt.Fprintf(out, "  see: jutong dispute list --department tax   and   %s\n",
		shellQuote(st.ClickHouseClient("--format", "PrettyCompactNoEscapes", "--query", "SELECT * FROM scorecard_disputes ORDER BY department")))
	return nil
}

// currentRecord reads a record's current state from the base database,
// as the SDK takes it (the row as JSON, typed by schemas.FromJSON).
func currentRecord(ctx context.Context, st *stack.Stack, it *catalog.Item, key string) (map[string]any, error) {
	d, n := it.Namespace()
	var raw []byte
	q := fmt.Sprintf("SELECT row_to_json(t) FROM %s t WHERE %s = $1", pgx.Identifier{d, n}.Sanitize(), pgx.Identifier{it.Key}.Sanitize())
	if err := st.PGPool.QueryRow(ctx, q, key).Scan(&raw); err != nil {
		return nil, fmt.Errorf("demo dispute: %s %s: %w", it.Code, key, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var row map[string]any
	if err := dec.Decode(&row); err != nil {
		return nil, err
	}
	for k := range row {
		if it.Field(k) == nil {
			delete(row, k) // the change's metadata (_event_id, ...)
		}
	}
	return schemas.FromJSON(it, row)
}
