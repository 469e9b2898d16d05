// Package landing says where a change has landed in the bus's sinks and
// feeds, for the disputes' receipts, by asking each sink (pipeline.Locator,
// pipeline.Ledgerer: no SQL of a sink's tables here), and reads a change
// at its position in its item's topic (which record a correction is of).
package landing

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/dispute"
)

// Config says where the sinks are.
type Config struct {
	Catalog *catalog.Catalog
	// Sinks are the running sinks that hold an item: the database sinks
	// that accept it and its grants' feeds.
	Sinks func(it *catalog.Item) []pipeline.Sink
	// Kafka reads the items' topics, as the bus.
	Kafka   []kgo.Opt
	Decoder *schemas.Decoder
}

// Landing answers where changes landed.
type Landing struct{ cfg Config }

// New returns a Landing.
func New(cfg Config) *Landing { return &Landing{cfg: cfg} }

// Receipts says where a correcting change has landed, asking each sink
// holding its item: a sink that finds the change (a pipeline.Locator:
// ClickHouse's history, PostgreSQL's row while it is the key's current one)
// says where and when; a sink that does not, or cannot look (a feed: only a
// pipeline.Ledgerer), has landed it once its ledger has passed the position
// another sink found it at. The others are waited for; a sink that can say
// neither is not, nor is a ledger alone when no sink can find the change.
func (l *Landing) Receipts(ctx context.Context, item, eventID string) ([]dispute.Receipt, []string, error) {
	it := l.cfg.Catalog.Item(item)
	if it == nil || l.cfg.Sinks == nil {
		return nil, nil, nil
	}
	holders := l.cfg.Sinks(it)
	found := map[string]pipeline.Landed{}
	var at *pipeline.Landed
	locators := 0
	for _, s := range holders {
		loc, ok := s.(pipeline.Locator)
		if !ok {
			continue
		}
		locators++
		land, ok, err := loc.Landed(ctx, it, eventID)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Name(), err)
		}
		if ok {
			found[s.Name()] = land
			if at == nil {
				at = &land
			}
		}
	}
	var receipts []dispute.Receipt
	var waiting []string
	for _, s := range holders {
		if land, ok := found[s.Name()]; ok {
			receipts = append(receipts, dispute.Receipt{Sink: s.Name(), Topic: it.Topic(), Partition: land.Partition, Offset: land.Offset, Landed: land.At, Key: land.Key})
			continue
		}
		_, locates := s.(pipeline.Locator)
		led, ledgers := s.(pipeline.Ledgerer)
		switch {
		case at != nil && ledgers:
			ledger, err := led.Ledger(ctx, it)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", s.Name(), err)
			}
			if ledger[at.Partition] > at.Offset { // passed since, or not indexed by event id
				receipts = append(receipts, dispute.Receipt{Sink: s.Name(), Topic: it.Topic(), Partition: at.Partition, Offset: at.Offset, Landed: time.Now().UTC()})
				continue
			}
			waiting = append(waiting, s.Name())
		case locates || (ledgers && locators > 0):
			waiting = append(waiting, s.Name())
		}
	}
	return receipts, waiting, nil
}

// Fetch reads and decodes one record of an item's topic.
func (l *Landing) Fetch(it *catalog.Item) func(ctx context.Context, partition int32, offset int64) (*schemas.Event, error) {
	return func(ctx context.Context, partition int32, offset int64) (*schemas.Event, error) {
		cl, err := kafkaconn.NewClient(l.cfg.Kafka, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{it.Topic(): {partition: kgo.NewOffset().At(offset)}}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("fetch %s/%d@%d: %w", it.Topic(), partition, offset, err)
			}
			for _, r := range fs.Records() {
				if r.Offset == offset {
					return l.cfg.Decoder.DecodeItem(ctx, it, r.Value)
				}
			}
		}
	}
}
