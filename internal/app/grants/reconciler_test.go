package grants

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/jutong/jutong/internal/embedded"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/server/access"
	"github.com/jutong/jutong/server/audit"
	"github.com/jutong/jutong/server/control"
)

// feeds records what the reconciler asked of the feeds.
type feeds struct {
	mu   sync.Mutex
	want []map[string]feed.Grant
}

func (f *feeds) Sync(_ context.Context, want map[string]feed.Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.want = append(f.want, want)
	return nil
}

// trail records the audit events.
type trail struct{ evs []audit.Event }

func (a *trail) Write(_ context.Context, evs ...audit.Event) error {
	a.evs = append(a.evs, evs...)
	return nil
}

// TestReconciler: without a bus, on a real (embedded) cluster's ACLs: a
// grant that sees every field in clear reads the item's topic, one that
// masks reads a feed of its own (and only it gets one); the ACLs follow,
// each change is audited, a second apply changes nothing, a revoked grant
// loses its read, and reads are attributed to their grants.
func TestReconciler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := embedded.Start(ctx, embedded.Config{Brokers: 1, Ports: []int{0}, AdminUser: "jutong", AdminPassword: "pw"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kopts, err := cluster.Admin().Opts()
	if err != nil {
		t.Fatal(err)
	}
	fd, tr := &feeds{}, &trail{}
	r := New(Config{Catalog: cat, ACLs: KafkaACLs{Kafka: kopts}, Feeds: fd, Audit: tr})

	const resident, enterprise = "population.resident_registration", "legal_person.enterprise_registration"
	var all []string
	for _, f := range cat.Item(enterprise).Fields {
		all = append(all, f.Name)
	}
	whole := control.Grant{ID: "app-whole", Department: "tax", Item: enterprise, Fields: all, Grade: 4}
	masked := control.Grant{ID: "app-masked", Department: "health", Item: resident, Fields: []string{"name", "phone"}, Grade: 1}
	if got := Topic(cat.Item(enterprise), whole); got != enterprise {
		t.Errorf("a whole grant reads %s", got)
	}
	feedTopic := topicname.Feed("health", resident, "app-masked")
	if got := Topic(cat.Item(resident), masked); got != feedTopic {
		t.Errorf("a masked grant reads %s", got)
	}
	if err := r.Apply(ctx, []control.Grant{whole, masked}); err != nil {
		t.Fatal(err)
	}
	if last := fd.want[len(fd.want)-1]; len(last) != 1 || last["app-masked"].Grade != 1 {
		t.Fatalf("feeds asked for: %v, want the masked grant's only", last)
	}
	reads := readACLs(ctx, t, cluster)
	if !reads["User:dept.tax "+enterprise] || !reads["User:dept.health "+feedTopic] || reads["User:dept.health "+resident] {
		t.Fatalf("READ ACLs: %v", reads)
	}
	added := 0
	for _, e := range tr.evs {
		if e.Kind == audit.ACLAdded && e.Actor == "jutong" {
			added++
		}
	}
	if added == 0 {
		t.Fatal("the ACLs added were not audited")
	}
	before := len(tr.evs)
	if err := r.Apply(ctx, []control.Grant{whole, masked}); err != nil || len(tr.evs) != before {
		t.Fatalf("a second apply changed something: %d audit events more (%v)", len(tr.evs)-before, err)
	}
	// Reads attributed to grants, by the group's department.
	if d, it, g, ok := r.ResolveRead("health.stats", feedTopic); !ok || d != "health" || it != resident || g != "app-masked" {
		t.Errorf("a feed read: %s %s %s %v", d, it, g, ok)
	}
	if d, it, g, ok := r.ResolveRead("tax.etl", enterprise); !ok || d != "tax" || it != enterprise || g != "app-whole" {
		t.Errorf("an item read: %s %s %s %v", d, it, g, ok)
	}
	if _, _, _, ok := r.ResolveRead("tax.etl", feedTopic); ok {
		t.Error("tax's group reading health's feed was attributed")
	}
	if _, _, _, ok := r.ResolveRead("jutong.sink.postgres", enterprise); ok {
		t.Error("the bus's own group was attributed to a department")
	}
	// Revoked: the read goes, and that is audited.
	if err := r.Apply(ctx, []control.Grant{masked}); err != nil {
		t.Fatal(err)
	}
	if reads := readACLs(ctx, t, cluster); reads["User:dept.tax "+enterprise] {
		t.Fatal("a revoked grant still reads")
	}
	if !slices.ContainsFunc(tr.evs[before:], func(e audit.Event) bool {
		return e.Kind == audit.ACLRemove && e.Department == "tax" && strings.Contains(e.Detail, enterprise)
	}) {
		t.Fatal("the revoked read was not audited")
	}
}

// readACLs lists the READ ACLs on topics as "principal topic".
func readACLs(ctx context.Context, t *testing.T, cluster *embedded.Cluster) map[string]bool {
	t.Helper()
	cl, err := cluster.AdminClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	acls, err := access.Current(ctx, kadm.NewClient(cl))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, a := range acls {
		if a.Resource == kmsg.ACLResourceTypeTopic && a.Operation == kmsg.ACLOperationRead {
			out[a.Principal+" "+a.Name] = true
		}
	}
	return out
}
