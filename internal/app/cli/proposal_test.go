package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestProposalCommands: a department proposes a change to its item through
// the CLI, the authority approves it, and catalog history and diff show
// the versions; a department proposing another's item is refused.
func TestProposalCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _, runAs := officerBus(t, ctx)
	run := func(dept string, wantCode int, args ...string) string {
		t.Helper()
		out, errOut := runAs(dept, wantCode, args...)
		return out + errOut
	}
	var it map[string]any
	raw, _ := os.ReadFile("../../../model/catalog/data/items/license.business_license.json")
	_ = json.Unmarshal(raw, &it)
	it["fields"] = append(it["fields"].([]any), map[string]any{"name": "qr_code", "title": "电子亚照二维码", "type": "string", "grade": 1})
	file := filepath.Join(t.TempDir(), "item.json")
	b2, _ := json.Marshal(it)
	if err := os.WriteFile(file, b2, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run("tax", 1, "proposal", "submit", "--item-file", file, "--reason", "试图改他人目录"); !strings.Contains(out, "a department proposes changes to its own items only") {
		t.Fatalf("another department's item:\n%s", out)
	}
	out := run("market_supervision", 0, "proposal", "submit", "--item-file", file, "--reason", "增加电子营业执照二维码")
	id := regexp.MustCompile(`proposal (prp-[0-9a-f]+)`).FindStringSubmatch(out)
	if id == nil || !strings.Contains(out, "state     pending") || !strings.Contains(out, "+ field qr_code string grade 1") {
		t.Fatalf("submit printed:\n%s", out)
	}
	if out := run("big_data", 0, "proposal", "approve", id[1]); !strings.Contains(out, "state     approved") {
		t.Fatalf("approve printed:\n%s", out)
	}
	if out := run("tax", 0, "catalog", "history", "license.business_license"); !strings.Contains(out, "version 2: "+id[1]+" by market_supervision, approved by big_data") {
		t.Fatalf("history printed:\n%s", out)
	}
	if out := run("tax", 0, "catalog", "diff", "license.business_license", "1", "2"); strings.TrimSpace(out) != "+ field qr_code string grade 1" {
		t.Fatalf("diff printed:\n%s", out)
	}
}
