package access_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/access"
	"github.com/jutong/jutong/catalog"
	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/producers"
)

const item = "legal_person.enterprise_registration"

func start(t *testing.T) (*bus.Bus, *catalog.Catalog) {
	t.Helper()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", DataDir: t.TempDir(),
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, cat
}

// as returns a raw franz-go client authenticated as department dept.
func as(t *testing.T, b *bus.Bus, cat *catalog.Catalog, dept string) *kgo.Client {
	t.Helper()
	p := cat.Department(dept).Principal
	k := kafkaconn.Config{Brokers: b.Kafka().Brokers, User: p, Password: b.Credentials[p]}
	cl, err := k.Client(kgo.RecordRetries(1), kgo.RequestRetries(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestOnlyTheSourceMayWrite: Kafka itself refuses a write to an item's topic
// by any department but the item's source, whatever the client.
func TestOnlyTheSourceMayWrite(t *testing.T) {
	b, cat := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := func() *kgo.Record { return &kgo.Record{Topic: item, Key: []byte("k"), Value: []byte("v")} }
	if err := as(t, b, cat, "market_supervision").ProduceSync(ctx, rec()).FirstErr(); err != nil {
		t.Fatalf("the source department could not write: %v", err)
	}
	for _, dept := range []string{"tax", "big_data", "public_security"} {
		err := as(t, b, cat, dept).ProduceSync(ctx, rec()).FirstErr()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Errorf("%s wrote to %s: %v", dept, item, err)
		}
	}
	// Every department may write to the quarantine topic.
	q := &kgo.Record{Topic: producers.QuarantineTopic, Value: []byte("{}")}
	if err := as(t, b, cat, "tax").ProduceSync(ctx, q).FirstErr(); err != nil {
		t.Fatalf("tax could not write to the quarantine: %v", err)
	}
	// Nobody but the superuser reads an item topic yet (grants come with access applications).
	cl := as(t, b, cat, "tax")
	cl.AddConsumeTopics(item)
	fs := cl.PollFetches(ctx)
	var denied bool
	fs.EachError(func(_ string, _ int32, err error) { denied = denied || errors.Is(err, kerr.TopicAuthorizationFailed) })
	if !denied {
		t.Fatalf("tax read %s without a grant: %v", item, fs.Err0())
	}
}

// TestReconcile: the ACLs follow the catalog: a changed source loses its
// write ACL and the new one gains it; a second reconcile changes nothing.
func TestReconcile(t *testing.T) {
	b, cat := start(t)
	ctx := context.Background()
	cl, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	added, removed, err := access.Reconcile(ctx, adm, access.Desired(cat, producers.QuarantineTopic, producers.CheckpointTopic))
	if err != nil || len(added)+len(removed) != 0 {
		t.Fatalf("second reconcile changed %v / %v (%v)", added, removed, err)
	}
	cat.Item(item).Source = "tax" // as if the catalog moved the item
	added, removed, err = access.Reconcile(ctx, adm, access.Desired(cat, producers.QuarantineTopic, producers.CheckpointTopic))
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 2 || len(removed) != 2 || added[0].Principal != "User:dept.tax" || removed[0].Principal != "User:dept.market_supervision" {
		t.Fatalf("added %v removed %v", added, removed)
	}
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = as(t, b, cat, "market_supervision").ProduceSync(ctx2, &kgo.Record{Topic: item, Value: []byte("v")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("the former source still writes: %v", err)
	}
}
