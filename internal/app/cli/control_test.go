package cli

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/server/access"
)

// officerBus starts a bus (one broker, no databases) whose officers'
// tokens are in secrets, and returns a runner of jutong commands as a
// department's officer against its API, which fails the test unless the
// exit code is want; it returns the output and the error output.
func officerBus(t *testing.T, ctx context.Context) (b *bus.Bus, secrets string, runAs func(dept string, want int, args ...string) (string, string)) {
	t.Helper()
	cat, _ := catalog.Sample()
	secrets = t.TempDir()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true, SecretsDir: secrets,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b, secrets, func(dept string, want int, args ...string) (string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append(args, "--api", b.APIURL(), "--officers", filepath.Join(secrets, "officers.json"), "--department", dept)
		if code := Run(ctx, args, &out, &errOut); code != want {
			t.Fatalf("jutong %s: exit %d: %s %s", strings.Join(args, " "), code, out.String(), errOut.String())
		}
		return out.String(), errOut.String()
	}
}

// TestControlCommands drives applications through the CLI against a running
// bus: apply, the authority's and the source's approvals, the lists, a
// grant's projection, a refusal naming its field, and a password rotation.
func TestControlCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, secrets, runAs := officerBus(t, ctx)
	run := func(dept string, args ...string) string {
		t.Helper()
		out, _ := runAs(dept, 0, args...)
		return out
	}
	out := run("health", "apply", "--item", "population.resident_registration", "--purpose", "疫苗接种覆盖率统计",
		"--fields", "citizen_id,name,division_code", "--grade", "2")
	id := regexp.MustCompile(`application (app-[0-9a-f]+)`).FindStringSubmatch(out)
	if id == nil || !strings.Contains(out, "authority_review") || !strings.Contains(out, "due ") {
		t.Fatalf("apply printed:\n%s", out)
	}
	if out := run("big_data", "applications", "--state", "authority_review"); !strings.Contains(out, id[1]) {
		t.Fatalf("the authority's list lacks the application:\n%s", out)
	}
	if out := run("big_data", "approve", id[1], "--reason", "用途正当"); !strings.Contains(out, "source_review") {
		t.Fatalf("after the authority:\n%s", out)
	}
	if out := run("public_security", "approve", id[1], "--grade", "1"); !strings.Contains(out, "granted") {
		t.Fatalf("after the source:\n%s", out)
	}
	out = run("health", "grants", "--show")
	for _, want := range []string{id[1], "_jutong.feed.health.population.resident_registration." + id[1],
		"citizen_id", "masked (first 6 and last 4 characters)", "name ", "birth_date", "dropped", "division_code", "clear"} {
		if !strings.Contains(out, want) {
			t.Errorf("grants --show lacks %q:\n%s", want, out)
		}
	}
	// Health, which now reads residents, disputes one; the source sees it and rejects it.
	out = run("health", "dispute", "raise", "--item", "population.resident_registration", "--key", "500103199003071234",
		"--fields", "division_code", "--claim", "户籍地应为渝中区 500103", "--evidence", "户口簿") // a field its grant shows in clear (name is masked at grade 1)
	did := regexp.MustCompile(`dispute (dsp-[0-9a-f]+)`).FindStringSubmatch(out)
	if did == nil || !strings.Contains(out, "state     open") || !strings.Contains(out, "source    public_security") {
		t.Fatalf("dispute raise printed:\n%s", out)
	}
	if out := run("public_security", "dispute", "list"); !strings.Contains(out, did[1]) {
		t.Fatalf("the source's list lacks the dispute:\n%s", out)
	}
	if out := run("public_security", "dispute", "reject", did[1], "--reason", "与户籍档案一致"); !strings.Contains(out, "rejected  与户籍档案一致") {
		t.Fatalf("dispute reject printed:\n%s", out)
	}
	out = run("health", "dispute", "raise", "--item", "population.resident_registration", "--key", "500103199003071234",
		"--fields", "division_code", "--claim", "区划代码应为 500104")
	did = regexp.MustCompile(`dispute (dsp-[0-9a-f]+)`).FindStringSubmatch(out)
	if out := run("public_security", "dispute", "correct", did[1], "--event-id", "0b0a1d6e-5c8f-4f7e-8a4e-2d1c0b9a8f7e"); !strings.Contains(out, "state     corrected") {
		t.Fatalf("dispute correct printed (a bus without sinks: closed at once):\n%s", out)
	}
	// A refusal without a reason is refused, naming the field.
	var o, e bytes.Buffer
	out = run("civil_affairs", "apply", "--item", "legal_person.tax_credit_rating", "--purpose", "低保资格核查")
	id2 := regexp.MustCompile(`application (app-[0-9a-f]+)`).FindStringSubmatch(out)[1]
	if code := Run(ctx, []string{"refuse", id2, "--api", b.APIURL(), "--officers", filepath.Join(secrets, "officers.json"), "--department", "big_data"}, &o, &e); code == 0 || !strings.Contains(e.String(), "reason") {
		t.Fatalf("a refusal without a reason: exit %d, %s", code, e.String())
	}
	var rout, rerr bytes.Buffer
	if code := Run(ctx, []string{"responsibilities"}, &rout, &rerr); code != 0 || !strings.Contains(rout.String(), "population.births") {
		t.Fatalf("responsibilities: %s%s", rout.String(), rerr.String())
	}
	// Rotation: the old password stops working, the new one works.
	creds := filepath.Join(secrets, "credentials.json")
	old, _ := access.ReadCredentials(creds)
	var ro, re bytes.Buffer
	if code := Run(ctx, []string{"dept", "rotate", "tax", "--brokers", strings.Join(b.Kafka().Brokers, ","), "--kafka-user", "jutong",
		"--kafka-password", "pw", "--credentials", creds}, &ro, &re); code != 0 {
		t.Fatalf("rotate: %s", re.String())
	}
	now, _ := access.ReadCredentials(creds)
	if now["dept.tax"] == old["dept.tax"] || now["dept.health"] != old["dept.health"] {
		t.Fatal("rotate did not change exactly the tax password")
	}
	ping := func(pw string) error {
		cl, err := kafkaconn.Config{Brokers: b.Kafka().Brokers, User: "dept.tax", Password: pw}.Client()
		if err != nil {
			return err
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return cl.Ping(pctx)
	}
	if err := ping(now["dept.tax"]); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	if err := ping(old["dept.tax"]); err == nil {
		t.Fatal("the old password still works")
	}
}
