package producers_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/model/rules"
	"github.com/jutong/jutong/schemas"
)

// TestTextSizeAndDuplicatesThroughTheInbox: through the SDK, a NUL, bytes
// that are not UTF-8 and an oversized record are refused at once with their
// rule and kept by the bus; an event sent twice reaches the item topic once;
// and another department cannot learn, by sending the same id, that an id
// was taken: it is refused for not being the source, before any id check.
func TestTextSizeAndDuplicatesThroughTheInbox(t *testing.T) {
	b, cat := startBus(t)
	pub := publisherAs(t, b, cat, "market_supervision", nil)
	it := cat.Item(item)
	gen := synth.New(it, 12, time.Now())
	gen.DeleteEvery = 0
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	named := func(name string) *schemas.Event {
		e := gen.Next()
		e.Data["name"] = name
		return e
	}
	bad := []*schemas.Event{named("重庆\x00公司"), named("重庆\xff公司"), named(strings.Repeat("大", 1<<20))}
	wantRule := []string{"text.nul", "text.utf8", "record.size"}
	res, _ := pub.Publish(ctx, item, bad...)
	for i, r := range res {
		var v *rules.Violation
		if !errors.As(r.Err, &v) || v.Rule != wantRule[i] {
			t.Errorf("event %d: %v, want rule %s", i, r.Err, wantRule[i])
		}
	}
	twice := gen.Next()
	for i := 0; i < 2; i++ {
		if _, err := pub.Publish(ctx, item, twice); err != nil {
			t.Fatal(err)
		}
	}
	// Tax sends an event with the same id for market supervision's item.
	taxPub := publisherAs(t, b, cat, "tax", nil)
	probe := *twice
	_, err := taxPub.Publish(ctx, item, &probe)
	if v := (*rules.Violation)(nil); !errors.As(err, &v) || v.Rule != "source.owner" {
		t.Fatalf("tax's probe: %v, want source.owner", err)
	}
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), item, func(r *kgo.Record) { n++ }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("the item topic holds %d records, want the one valid event once", n)
	}
	rules := map[string]quarantine.Record{}
	if err := kafkaconn.ReadAll(ctx, b.KafkaOpts(), quarantine.Topic, func(r *kgo.Record) {
		var q quarantine.Record
		if json.Unmarshal(r.Value, &q) == nil {
			rules[q.Rule+"/"+q.Department] = q
		}
	}); err != nil {
		t.Fatal(err)
	}
	for _, rule := range wantRule {
		q, ok := rules[rule+"/market_supervision"]
		if !ok || (rule != "record.size" && q.Field != "name") {
			t.Errorf("no %s refusal (of field name) in the quarantine: %+v", rule, q.Rule)
		}
	}
	if q := rules["record.size/market_supervision"]; q.PayloadSHA256 == "" {
		t.Errorf("the oversized record is not kept as its start and a SHA-256: %+v", q)
	}
	if _, ok := rules["source.owner/tax"]; !ok {
		t.Error("tax's probe is not in the quarantine, in tax's name")
	}
}
