package consumers_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jutong/jutong/connect"
	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/server/control"
)

// A department reads an item it was granted. Here the bus runs in the
// process and the application is approved through its control plane; against
// a real bus the department applies with `jutong apply` (or the control API)
// and only the addresses and its password differ.
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

	// Public security publishes residents (the citizen ID is graded 3).
	const item = "population.resident_registration"
	pub, err := producers.New(ctx, cat, "public_security", connect.Config{Brokers: b.Kafka().Brokers, User: "dept.public_security", Password: b.Credentials["dept.public_security"], Registry: b.RegistryURL()})
	if err != nil {
		panic(err)
	}
	defer pub.Close()
	ev := synth.New(cat.Item(item), 1, time.Now()).Next()
	if _, err := pub.Publish(ctx, item, ev); err != nil {
		panic(err)
	}

	// Health applies for three fields at grade 2; the authority, then the
	// source department, approve.
	app, _ := b.Control.Apply(ctx, "health", control.Request{Item: item, Purpose: "疫苗接种覆盖率统计",
		Fields: []string{"citizen_id", "name", "division_code"}, Grade: 2})
	b.Control.Decide(ctx, app.ID, "big_data", control.Verdict{Approve: true})
	b.Control.Decide(ctx, app.ID, "public_security", control.Verdict{Approve: true})

	sub, err := consumers.New(ctx, cat, "health", []string{item}, connect.Config{Brokers: b.Kafka().Brokers, User: "dept.health", Password: b.Credentials["dept.health"], Registry: b.RegistryURL()}, consumers.Group("vaccination-stats")) // the group is health.vaccination-stats
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	rctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	err = sub.Run(rctx, func(_ context.Context, d consumers.Delivery) error {
		id := d.Event.Data["citizen_id"].(string)
		_, hasBirth := d.Event.Data["birth_date"]
		fmt.Println(d.Event.Op, "citizen_id masked:", id[6:14] == "********", "birth_date delivered:", hasBirth)
		stop() // one is enough here; returning nil commits it
		return nil
	})
	if err != nil {
		panic(err)
	}
	// Output:
	// CREATE citizen_id masked: true birth_date delivered: false
}
