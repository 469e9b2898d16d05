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

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/server/access"
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
	t.Cleanup(func() { _ = b.Close(context.Background()) })
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

// TestOnlyInboxes: Kafka itself refuses every department, the item's source
// included, a write to an item's topic, to the quarantine and to another
// department's inbox, whatever the client; a department writes its own inbox.
func TestOnlyInboxes(t *testing.T) {
	b, cat := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	write := func(dept, topic string) error {
		return as(t, b, cat, dept).ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}).FirstErr()
	}
	for _, dept := range []string{"market_supervision", "tax", "big_data"} {
		for _, topic := range []string{item, topicname.Quarantine, topicname.Inbox("public_security"), topicname.Checkpoints("public_security")} {
			if err := write(dept, topic); !errors.Is(err, kerr.TopicAuthorizationFailed) {
				t.Errorf("%s wrote to %s: %v", dept, topic, err)
			}
		}
		if err := write(dept, topicname.Inbox(dept)); err != nil {
			t.Errorf("%s could not write its own inbox: %v", dept, err)
		}
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

// TestReconcile: the ACLs follow the catalog: a new data authority gains
// the read of every department's rejects and the former one loses it; a
// second reconcile changes nothing.
func TestReconcile(t *testing.T) {
	b, cat := start(t)
	ctx := context.Background()
	cl, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	added, removed, err := access.Reconcile(ctx, adm, access.Desired(cat))
	if err != nil || len(added)+len(removed) != 0 {
		t.Fatalf("second reconcile changed %v / %v (%v)", added, removed, err)
	}
	former := cat.Authority
	cat.Authority = "tax" // as if the catalog named another authority
	added, removed, err = access.Reconcile(ctx, adm, access.Desired(cat))
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 2 || len(removed) != 2 || added[0].Principal != "User:dept.tax" || removed[0].Principal != "User:dept."+former {
		t.Fatalf("added %v removed %v", added, removed)
	}
}
