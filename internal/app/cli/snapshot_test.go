package cli

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/app/bus"
	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/internal/testenv"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/producers"
	"github.com/jutong/jutong/server/control"
)

// TestSnapshotCommand: jutong snapshot writes the start line, one line per
// live key and the end line, as the granted department; without a grant it
// fails with the reason.
func TestSnapshotCommand(t *testing.T) {
	cat, _ := catalog.Sample()
	secrets := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := bus.Start(ctx, bus.Config{Catalog: cat, KafkaPorts: []int{0}, Brokers: 1, ApplyTopics: true, SecretsDir: secrets,
		AdminUser: "jutong", AdminPassword: "pw", RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		PostgresDSN: testenv.Postgres(t), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	const item = "legal_person.enterprise_registration"
	it := cat.Item(item)
	pub, err := producers.New(ctx, cat, it.Source, b.Conn(it.Source))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	gen := synth.New(it, 5, time.Now())
	gen.DeleteEvery = 0
	for range 40 {
		if _, err := pub.Publish(ctx, item, gen.Next()); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	args := []string{"snapshot", "--item", item, "--purpose", "纳税信用评价", "--department", "tax", "--api", b.APIURL(),
		"--credentials", filepath.Join(secrets, "credentials.json")}
	var out, errOut bytes.Buffer
	if code := Run(ctx, args, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "no active grant") {
		t.Fatalf("without a grant: exit %d, %s", code, errOut.String())
	}
	app, err := b.Control.Apply(ctx, "tax", control.Request{Item: item, Purpose: "纳税信用评价"})
	if err != nil {
		t.Fatal(err)
	}
	for _, by := range []string{cat.Authority, it.Source} {
		if app.State != control.Granted {
			if app, err = b.Control.Decide(ctx, app.ID, by, control.Verdict{Approve: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	out.Reset()
	errOut.Reset()
	if code := Run(ctx, args, &out, &errOut); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != gen.Live()+2 || !strings.Contains(lines[0], `"positions"`) || !strings.Contains(lines[len(lines)-1], `"end":true`) {
		t.Fatalf("%d lines for %d live keys:\n%s\n%s", len(lines), gen.Live(), lines[0], errOut.String())
	}
}
