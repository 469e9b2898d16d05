package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/topicname"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := Run(ctx, args, &out, &errOut); code != 0 {
		return out.String(), &exitError{code, errOut.String()}
	}
	return out.String(), nil
}

type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func TestCatalogApplyIsIdempotent(t *testing.T) {
	cat, err := catalog.Sample()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0, 0, 0}, Brokers: 3,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	args := []string{"catalog", "apply", "--brokers", strings.Join(b.Kafka().Brokers, ","),
		"--kafka-user", "jutong", "--kafka-password", "pw", "--registry", b.RegistryURL()}

	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Each item's topic and its flags topic, with their schemas.
	if n := strings.Count(out, "\ncreate ") + strings.Count(out[:7], "create "); n != 2*len(cat.Items) {
		t.Errorf("created %d topics, want %d:\n%s", n, 2*len(cat.Items), out)
	}
	if n := strings.Count(out, "registered "); n != 2*len(cat.Items) {
		t.Errorf("registered %d schemas, want %d:\n%s", n, 2*len(cat.Items), out)
	}
	if !strings.Contains(out, topicname.Flags(cat.Items[0].Topic())) {
		t.Errorf("no flags topic created:\n%s", out)
	}
	out, err = run(t, args...)
	if err != nil || !strings.HasPrefix(out, "no change:") {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	// A catalog change that adds a required field is refused by check.
	out, err = run(t, "catalog", "check", "--registry", b.RegistryURL(), "--kafka-user", "jutong", "--kafka-password", "pw")
	if err != nil || !strings.Contains(out, "schemas compatible with") {
		t.Fatalf("check against the registry: %v %s", err, out)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, catalog.SampleFS()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "items", "legal_person.tax_credit_rating.json")
	raw, _ := os.ReadFile(path)
	changed := strings.Replace(string(raw), `"fields": [`, `"fields": [
    {"name": "tax_office", "title": "主管税务机关", "type": "string", "required": true, "grade": 1},`, 1)
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, "catalog", "check", "--catalog", dir, "--registry", b.RegistryURL(), "--kafka-user", "jutong", "--kafka-password", "pw")
	if err == nil || !strings.Contains(err.Error(), "item legal_person.tax_credit_rating") || !strings.Contains(err.Error(), "field data.tax_office: added without a default") {
		t.Fatalf("check of an incompatible change: %v", err)
	}
	// The topics are as the catalog says.
	cl, err := b.Kafka().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tds, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range cat.Items {
		td, ok := tds[it.Topic()]
		want := cat.TopicConfig(it)
		if !ok || int32(len(td.Partitions)) != want.Partitions || td.Partitions.NumReplicas() != 3 {
			t.Errorf("%s: topic %+v, want %d partitions x 3 replicas", it.Code, td, want.Partitions)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "geography.standard_address")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rcs[0].Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	if got["cleanup.policy"] != "compact" || got["retention.ms"] != "-1" {
		t.Errorf("standard_address configs %v", got)
	}
	// list --json lists what the catalog holds, for scripts.
	out, err = run(t, "catalog", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var listed struct {
		Items []struct {
			Code  string `json:"code"`
			Share string `json:"share"`
		} `json:"items"`
		Themes []any `json:"themes"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.Items) != len(cat.Items) || len(listed.Themes) != len(cat.Themes) {
		t.Fatalf("list --json: %v: %d items, %d themes", err, len(listed.Items), len(listed.Themes))
	}
}

func TestCatalogCheck(t *testing.T) {
	out, err := run(t, "catalog", "check")
	if err != nil || !strings.HasPrefix(out, "catalog ok: 9 departments, 22 items, 3 theme databases") {
		t.Fatalf("check of the sample: %v %s", err, out)
	}
	_, err = run(t, "catalog", "check", "--catalog", "../../../model/catalog/testdata/broken/key_field_missing")
	if err == nil || !strings.Contains(err.Error(), "field penalty_no: business key field does not exist") {
		t.Fatalf("check of a broken catalog: %v", err)
	}
	out, err = run(t, "catalog", "show", "legal_person.enterprise_registration")
	if err != nil || !strings.Contains(out, "registered_capital") || !strings.Contains(out, "decimal(18,4)") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if _, err := run(t, "catalog", "show", "enterprise"); err == nil || !strings.Contains(err.Error(), "did you mean legal_person.enterprise_registration") {
		t.Fatalf("show of a partial code: %v", err)
	}
}

// TestBenchPublishPrints runs a small bench publish and checks its figures
// are printed (the figures themselves are measured, not asserted).
func TestBenchPublishPrints(t *testing.T) {
	out, err := run(t, "bench", "publish", "--events", "20000", "--broker-count", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"checked + encoded, one core, no Kafka", "published and acknowledged", "events/s", "MB/s", "cores busy", "peak RSS"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
}

// TestServeRefusesWeakCredentials: jutong serve does not start with no SASL
// user, an empty password or a known default one, unless told it is a lab.
func TestServeRefusesWeakCredentials(t *testing.T) {
	for _, args := range [][]string{
		{"--kafka-user", "jutong", "--kafka-password", "jutong-dev"},
		{"--kafka-user", "jutong", "--kafka-password", "change-me"},
		{"--kafka-user", "jutong", "--kafka-password", ""},
		{"--kafka-user", "", "--kafka-password", "a-long-enough-secret"},
		{"--kafka-user", "jutong", "--kafka-password", "short"},
	} {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), append([]string{"serve", "--brokers", "127.0.0.1:1"}, args...), &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), "refusing to start") {
			t.Errorf("serve %v: exit %d, %s", args, code, errOut.String())
		}
	}
	if weakCredentials("jutong", "Vk3-hq9Zr-Lp2x-Ww7") != "" {
		t.Error("a strong password was refused")
	}
}
