package registry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	hregistry "github.com/hamba/avro/v2/registry"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr"
)

// TestRegistryAccess: reads need a principal; a department's principal
// reads but cannot register, delete or change the configuration; only the
// bus's admin can. Tried with franz-go's sr, hamba's client and raw HTTP.
func TestRegistryAccess(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, url := openURL(t, c)
	ctx := context.Background()
	s := baseSchema(t)
	if _, err := st.Register(ctx, subject, s.JSON); err != nil {
		t.Fatal(err)
	}
	client := func(opts ...sr.ClientOpt) *sr.Client {
		rc, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(url)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return rc
	}
	status := func(err error) int {
		var re *sr.ResponseError
		if errors.As(err, &re) {
			return re.StatusCode
		}
		return 0
	}

	// Nobody, and a wrong password, read nothing.
	for name, rc := range map[string]*sr.Client{
		"anonymous":                   client(),
		"wrong password":              client(sr.BasicAuth(readerUser, "guess")),
		"unknown user":                client(sr.BasicAuth("mallory", readerPass)),
		"admin name, reader password": client(sr.BasicAuth(adminUser, readerPass)),
	} {
		if _, err := rc.Subjects(ctx); status(err) != http.StatusUnauthorized {
			t.Errorf("%s listed subjects: %v, want 401", name, err)
		}
		if _, err := rc.CreateSchema(ctx, "squat-value", sr.Schema{Schema: `"string"`}); status(err) != http.StatusUnauthorized {
			t.Errorf("%s registered: %v, want 401", name, err)
		}
	}

	// A department reads, looks up and tests compatibility...
	dept := client(sr.BasicAuth(readerUser, readerPass))
	if subs, err := dept.Subjects(ctx); err != nil || len(subs) != 1 {
		t.Fatalf("reader lists %v %v", subs, err)
	}
	latest, err := dept.SchemaByVersion(ctx, subject, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dept.LookupSchema(ctx, subject, sr.Schema{Schema: s.JSON}); err != nil {
		t.Errorf("reader lookup: %v", err)
	}
	if _, err := dept.CheckCompatibility(ctx, subject, -1, sr.Schema{Schema: s.JSON}); err != nil {
		t.Errorf("reader compatibility check: %v", err)
	}
	// ...and writes nothing: squat a subject, add a version, delete (soft,
	// permanent), loosen the compatibility globally or per subject.
	denied := map[string]error{}
	_, denied["register a new subject"] = dept.CreateSchema(ctx, "population.squatted-value", sr.Schema{Schema: `"string"`})
	_, denied["register a version"] = dept.CreateSchema(ctx, subject, sr.Schema{Schema: s.JSON})
	_, denied["delete the subject"] = dept.DeleteSubject(ctx, subject, sr.SoftDelete)
	_, denied["delete it permanently"] = dept.DeleteSubject(ctx, subject, sr.HardDelete)
	denied["delete a version"] = dept.DeleteSchema(ctx, subject, latest.Version, sr.SoftDelete)
	denied["set the global level"] = first(dept.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}))
	denied["set the subject's level"] = first(dept.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, subject))
	denied["reset the subject's level"] = first(dept.ResetCompatibility(ctx, subject))
	for what, err := range denied {
		if status(err) != http.StatusForbidden {
			t.Errorf("a department could %s: %v, want 403", what, err)
		}
	}
	if subs := st.Subjects(); len(subs) != 1 {
		t.Fatalf("subjects after the attempts: %v", subs)
	}
	if vs, _ := st.Versions(subject); len(vs) != 1 {
		t.Fatalf("versions after the attempts: %v", vs)
	}

	// hamba's client with the reader's credentials reads and cannot write.
	hc, err := hregistry.NewClient(url, hregistry.WithBasicAuth(readerUser, readerPass))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hc.GetLatestSchema(ctx, subject); err != nil {
		t.Errorf("hamba reader: %v", err)
	}
	if _, _, err := hc.CreateSchema(ctx, "squat2-value", `"string"`); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Errorf("hamba reader registered: %v", err)
	}

	// A raw request (as curl would) is refused before its body is read.
	req, _ := http.NewRequest(http.MethodPut, url+"/config", strings.NewReader(`{"compatibility":"NONE"}`))
	req.SetBasicAuth(readerUser, readerPass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("raw PUT /config by a department: %d", resp.StatusCode)
	}
	resp, err = http.Get(url + "/subjects")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("raw anonymous GET: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// The admin may.
	admin := client(sr.BasicAuth(adminUser, adminPass))
	if err := first(admin.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}, subject)); err != nil {
		t.Errorf("admin sets a level: %v", err)
	}
	if _, err := admin.DeleteSubject(ctx, subject, sr.SoftDelete); err != nil {
		t.Errorf("admin deletes: %v", err)
	}
}

// first is the first error of a compatibility answer.
func first(rs []sr.CompatibilityResult) error {
	for _, r := range rs {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}
