package producers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/schemas"
)

// A department service publishes the changes of an item it owns. Here the
// bus runs in the process; against a real one only the addresses and the
// department's password differ.
func Example() {
	ctx := context.Background()
	cat, _ := catalog.Sample()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true,
		AdminUser: "jutong", AdminPassword: "example", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer b.Close(context.Background())
	password := b.Credentials["dept.tax"] // jutong dev keeps these in .jutong/credentials.json

	pub, err := producers.New(ctx, cat, "tax", connect.Config{Brokers: b.Kafka().Brokers, User: "dept.tax", Password: password, Registry: b.RegistryURL()}, producers.System("金税三期"))
	if err != nil {
		panic(err)
	}
	defer pub.Close()

	rating := &schemas.Event{
		ID: "3f1c2d9e-6a4b-4c1d-9e2f-7a8b9c0d1e2f", Op: schemas.OpCreate, Key: "914403001922038216",
		EventTime: time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC),
		Data: map[string]any{
			"uscc": "914403001922038216", "taxpayer_name": "华为技术有限公司", "rating": "A",
			"year": int64(2025), "score": big.NewRat(9650, 100),
			"assessed_on": time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC),
		},
	}
	if _, err := pub.Publish(ctx, "legal_person.tax_credit_rating", rating); err != nil {
		panic(err)
	}
	fmt.Println("published", rating.Key)

	// A record with a wrong check character is refused, and kept in the quarantine.
	bad := *rating
	bad.ID, bad.Key = "8e1d0c9b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", "914403001922038217"
	bad.Data = map[string]any{"uscc": bad.Key, "taxpayer_name": "某公司", "rating": "A", "year": int64(2025),
		"assessed_on": time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
	_, err = pub.Publish(ctx, "legal_person.tax_credit_rating", &bad)
	var v *rules.Violation
	if errors.As(err, &v) {
		fmt.Println("refused:", v.Field, v.Rule)
	}
	// Output:
	// published 914403001922038216
	// refused: uscc uscc.checksum
}
