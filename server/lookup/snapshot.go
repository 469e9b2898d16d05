package lookup

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/server/audit"
)

// Start says where a snapshot's state stops and how to follow it.
type Start struct {
	Item  string `json:"item"`
	Grant string `json:"grant"`
	// Positions are, per partition of the item's topic, the offset of the
	// first change the snapshot does not hold: follow from there.
	Positions map[int32]int64 `json:"positions"`
	// Follow is the topic the grant reads: the item's own, or its feed,
	// whose records carry the item topic's offset in the header
	// jutong.origin.offset (same partition): skip those below Positions.
	Follow string `json:"follow"`
}

// Snapshot streams the current state of an item as the grant sees it,
// consistent with the PostgreSQL sink's ledger: one repeatable-read
// transaction reads the ledger's positions of the item's topic and the
// rows, which the sink writes in the same transactions. start is called
// before the first record; emit gets each record with its Data left empty
// (a snapshot renders a million: write it with AppendJSON). It returns how
// many records were emitted.
func (s *Service) Snapshot(ctx context.Context, dept, code, purpose string, start func(Start) error, emit func(*Record) error) (int, error) {
	it, err := s.item(code)
	if err != nil {
		return 0, err
	}
	g, err := s.authorize(dept, it, purpose)
	if err != nil {
		return 0, s.denied(ctx, dept, it, purpose, []string{"snapshot"}, err)
	}
	tx, err := s.cfg.DB.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("lookup: snapshot: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	st := Start{Item: it.Code, Grant: g.ID, Follow: s.projection(it, g).Topic(dept, g.ID)}
	// The sink's ledger, in the transaction that reads its tables.
	if st.Positions, err = pgsink.LedgerOf(ctx, tx, s.cfg.Sink, it.Topic()); err != nil {
		return 0, fmt.Errorf("lookup: snapshot: %w", err)
	}
	if err := s.cfg.Audit(ctx, audit.Event{Time: s.cfg.Now().UTC(), Kind: audit.Snapshot, Department: dept, Item: it.Code,
		Application: g.ID, Grant: g.ID, Actor: dept, Purpose: purpose, Detail: "positions " + positions(st.Positions)}); err != nil {
		return 0, &Denied{Status: 503, Reason: "the snapshot could not be audited, so it is not served: retry", RetryAfter: time.Second}
	}
	if err := start(st); err != nil {
		return 0, err
	}
	return s.stream(ctx, tx, it, g, emit)
}

// stream emits every row of the item's table, projected.
func (s *Service) stream(ctx context.Context, tx pgx.Tx, it *catalog.Item, g Grant, emit func(*Record) error) (int, error) {
	p := s.projection(it, g)
	rows, err := tx.Query(ctx, fmt.Sprintf("SELECT %s FROM %s", s.columns(it), s.table(it)))
	if err != nil {
		return 0, fmt.Errorf("lookup: snapshot: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return n, err
		}
		rec := s.record(it, p, vals, false)
		if s.cfg.Disputes != nil {
			rec.Disputes = s.cfg.Disputes(it.Code, rec.clearKey)
		}
		if err := emit(&rec); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

func positions(p map[int32]int64) string {
	parts := make([]int32, 0, len(p))
	for k := range p {
		parts = append(parts, k)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	var b strings.Builder
	for i, k := range parts {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", k, p[k])
	}
	return b.String()
}
