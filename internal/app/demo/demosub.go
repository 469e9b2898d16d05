package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jutong/jutong/consumers"
	"github.com/jutong/jutong/internal/app/stack"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/control"
)

// demoSubscribers plays two subscribing departments after the publishing:
// health applies for residents (a conditional item) at grade 2, is approved
// by the data authority and by public security, and reads its masked feed;
// tax applies for enterprise registrations (unconditional), is approved by
// the authority, and reads the item's own topic. Their reads are audited.
func demoSubscribers(ctx context.Context, out io.Writer, st *stack.Stack) error {
	type sub struct {
		dept, item, purpose string
		fields              []string
		grade               int
		reviewers           []string
	}
	subs := []sub{
		{"health", "population.resident_registration", "疫苗接种覆盖率统计", []string{"citizen_id", "name", "division_code"}, 2, []string{"big_data", "public_security"}},
		{"tax", "legal_person.enterprise_registration", "纳税信用评价", nil, 0, []string{"big_data"}},
	}
	fmt.Fprintf(out, "\nSubscribers (applications approved, reads through Kafka ACLs)\n")
	for _, s := range subs {
		if st.Catalog.Item(s.item) == nil {
			continue // another catalog
		}
		app, err := st.Bus.Control.Apply(ctx, s.dept, control.Request{Item: s.item, Purpose: s.purpose, Fields: s.fields, Grade: s.grade})
		if err != nil {
			return err
		}
		for _, by := range s.reviewers {
			if app, err = st.Bus.Control.Decide(ctx, app.ID, by, control.Verdict{Approve: true}); err != nil {
				return err
			}
		}
		n, topic, sample, err := demoRead(ctx, st, s.dept, s.item)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  %-7s %s: grant %s (%s), read %d records from %s\n", s.dept, s.item, app.ID, app.State, n, topic)
		if sample != "" {
			fmt.Fprintf(out, "          e.g. %s\n", sample)
		}
	}
	if _, err := st.Bus.AuditReads(ctx); err != nil {
		return err
	}
	return nil
}

// demoRead reads what a department's grant lets it read, until it is caught up.
func demoRead(ctx context.Context, st *stack.Stack, dept, item string) (int, string, string, error) {
	sub, err := consumers.New(ctx, st.Catalog, dept, []string{item}, st.Bus.Conn(dept), consumers.Group("demo"))
	if err != nil {
		return 0, "", "", err
	}
	defer sub.Close()
	rctx, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	n, sample, idle := 0, "", time.AfterFunc(3*time.Second, stop)
	err = sub.Run(rctx, func(_ context.Context, dl consumers.Delivery) error {
		idle.Reset(2 * time.Second) // stop once nothing came for a while: caught up
		n++
		if sample == "" && dl.Event.Data != nil {
			sample = describe(st.Catalog.Item(item), dl.Event.Data)
		}
		return nil
	})
	return n, sub.Topics()[item], sample, err
}

func describe(it *catalog.Item, data map[string]any) string {
	s := ""
	for i, f := range it.Fields {
		v, ok := data[f.Name]
		if !ok || i > 6 {
			continue
		}
		s += fmt.Sprintf("%s=%v ", f.Name, schemas.PortableValue(f, v))
	}
	return s
}
