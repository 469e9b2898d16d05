package registry_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
	"github.com/jutong/jutong/server/registry"
)

// The registry's principals in these tests: the bus's admin and one reader.
const (
	adminUser, adminPass   = "jutong", "admin-secret-for-tests"
	readerUser, readerPass = "tax", "reader-secret-for-tests"
)

var testAccess = registry.Access{Admin: adminUser, AdminPassword: adminPass, Reader: func(u string) (string, bool) {
	if u == readerUser {
		return readerPass, true
	}
	return "", false
}}

func open(t *testing.T, c *kfake.Cluster) (*registry.Store, *sr.Client) {
	t.Helper()
	st, url := openURL(t, c)
	rc, err := sr.NewClient(sr.URLs(url), sr.BasicAuth(adminUser, adminPass))
	if err != nil {
		t.Fatal(err)
	}
	return st, rc
}

// openURL opens a store on the cluster and serves it; it returns the URL.
func openURL(t *testing.T, c *kfake.Cluster) (*registry.Store, string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := registry.Open(ctx, cl, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	srv := httptest.NewServer(registry.Handler(st, testAccess, slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return st, srv.URL
}

func TestRegistryWithFranzGoClient(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, rc := open(t, c)
	ctx := context.Background()
	cat, _ := catalog.Sample()
	s, err := schemas.For(cat.Item("legal_person.enterprise_registration"))
	if err != nil {
		t.Fatal(err)
	}
	subject := "legal_person.enterprise_registration-value"
	ss, err := rc.CreateSchema(ctx, subject, sr.Schema{Schema: s.JSON})
	if err != nil {
		t.Fatal(err)
	}
	if ss.Version != 1 || ss.ID < 1 {
		t.Fatalf("created %+v", ss)
	}
	// Registering the same schema again returns the same id, no new version.
	id, err := rc.RegisterSchema(ctx, subject, sr.Schema{Schema: s.JSON}, -1, -1)
	if err != nil || id != ss.ID {
		t.Fatalf("re-register: id %d err %v, want %d", id, err, ss.ID)
	}
	got, err := rc.SchemaByID(ctx, ss.ID)
	if err != nil || got.Schema != s.JSON {
		t.Fatalf("by id: %v", err)
	}
	latest, err := rc.SchemaByVersion(ctx, subject, -1)
	if err != nil || latest.Version != 1 {
		t.Fatalf("latest: %+v %v", latest, err)
	}
	subs, err := rc.Subjects(ctx)
	if err != nil || len(subs) != 1 || subs[0] != subject {
		t.Fatalf("subjects %v %v", subs, err)
	}
	// Confluent's error codes.
	_, err = rc.SchemaByVersion(ctx, "no-such-subject", -1)
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != 40401 {
		t.Fatalf("unknown subject: %v", err)
	}
	_, err = rc.SchemaByID(ctx, 9999)
	if !errors.As(err, &re) || re.ErrorCode != 40403 {
		t.Fatalf("unknown id: %v", err)
	}
	_, err = rc.RegisterSchema(ctx, subject, sr.Schema{Schema: `{"type":"record","name":"x","fields":[{"name":"a","type":"nope"}]}`}, -1, -1)
	if !errors.As(err, &re) || re.ErrorCode != 42201 {
		t.Fatalf("invalid schema: %v", err)
	}
}

// TestRegistryStateSurvivesRestart: a second store reading the same topic
// (another instance, or this one restarted) sees the same subjects and ids.
func TestRegistryStateSurvivesRestart(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st1, _ := open(t, c)
	ctx := context.Background()
	v, err := st1.Register(ctx, "a-value", `{"type":"string"}`)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := st1.Register(ctx, "b-value", `{"type":"string"}`)
	if err != nil || v2.ID != v.ID {
		t.Fatalf("same schema under another subject: id %d, want %d (%v)", v2.ID, v.ID, err)
	}
	st2, rc2 := open(t, c)
	if got := st2.Subjects(); len(got) != 2 {
		t.Fatalf("second instance sees %v", got)
	}
	text, err := rc2.SchemaTextByID(ctx, v.ID)
	if err != nil || text != `"string"` && text != `{"type":"string"}` {
		t.Fatalf("by id on second instance: %q %v", text, err)
	}
}

// TestInstancesAgree: two instances registering at the same time, into the
// same and different subjects, end with the same ids and versions, and no id
// names two schemas.
func TestInstancesAgree(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st1, _ := open(t, c)
	st2, _ := open(t, c)
	ctx := context.Background()
	errs := make(chan error, 2)
	for i, st := range []*registry.Store{st1, st2} {
		go func() {
			for n := 0; n < 15; n++ {
				// Record schemas with an optional field each: all compatible.
				schema := fmt.Sprintf(`{"type":"record","name":"R","fields":[{"name":"k","type":"string"},{"name":"f%d_%d","type":["null","long"],"default":null}]}`, i, n)
				if _, err := st.Register(ctx, "shared-value", schema); err != nil {
					errs <- err
					return
				}
				if _, err := st.Register(ctx, fmt.Sprintf("own%d-value", i), schema); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Let each instance read the other's last writes.
	time.Sleep(500 * time.Millisecond)
	for _, subject := range []string{"shared-value", "own0-value", "own1-value"} {
		v1, err1 := st1.Versions(subject)
		v2, err2 := st2.Versions(subject)
		if err1 != nil || err2 != nil || fmt.Sprint(v1) != fmt.Sprint(v2) {
			t.Fatalf("%s: versions %v / %v (%v %v)", subject, v1, v2, err1, err2)
		}
		for _, n := range v1 {
			a, _ := st1.Get(subject, n)
			b, _ := st2.Get(subject, n)
			if a.ID != b.ID || a.Schema != b.Schema {
				t.Fatalf("%s v%d differs: %+v / %+v", subject, n, a, b)
			}
		}
	}
	if v, _ := st1.Versions("shared-value"); len(v) != 30 {
		t.Fatalf("shared subject has %d versions, want 30", len(v))
	}
	seen := map[int]string{}
	for _, subject := range st1.Subjects() {
		vs, _ := st1.Versions(subject)
		for _, n := range vs {
			v, _ := st1.Get(subject, n)
			if prev, ok := seen[v.ID]; ok && prev != v.Schema {
				t.Fatalf("id %d names two schemas", v.ID)
			}
			seen[v.ID] = v.Schema
		}
	}
	if len(seen) != 30 {
		t.Fatalf("%d distinct ids for 30 distinct schemas", len(seen))
	}
}
