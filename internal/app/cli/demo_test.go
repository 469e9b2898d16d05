package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/freeport"
	"github.com/jutong/jutong/internal/localsvc"
)

func freePorts(t *testing.T, n int) string {
	ports, err := freeport.Take(n)
	if err != nil {
		t.Fatal(err)
	}
	s := make([]string, n)
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// TestDemo runs `jutong demo --exit` as make demo does, and checks its
// summary: the sinks hold what was published, and the printed commands ran.
func TestDemo(t *testing.T) {
	if os.Getenv(localsvc.EnvPostgresDSN) == "" {
		if _, err := os.Stat("/usr/lib/postgresql"); err != nil && os.Getenv("CI") != "true" {
			t.Skip("no PostgreSQL binaries and no " + localsvc.EnvPostgresDSN)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A private checkout, as a clone under /root is: as root, PostgreSQL
	// runs as user postgres, which cannot enter it; the demo must cope.
	top, err := os.MkdirTemp("", "jutong-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	dir := filepath.Join(top, "checkout", ".jutong", "demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "postgres", "LOCATION")); err == nil {
			os.RemoveAll(strings.SplitN(string(b), "\n", 2)[0])
		}
	})
	var out, errOut bytes.Buffer
	var code int
	for attempt := 1; attempt <= 3; attempt++ { // a free port may be taken meanwhile by a parallel test
		out.Reset()
		errOut.Reset()
		code = Run(ctx, []string{"demo", "--events", "5000", "--exit", "--seed", "42",
			"--data-dir", dir, "--kafka-ports", freePorts(t, 3), "--registry-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), "address already in use") {
			break
		}
	}
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	s := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`events published\s+5000 in`),
		regexp.MustCompile(`PostgreSQL rows\s+(\d+) \(distinct live keys of the items in base and theme databases: (\d+)\) ok`),
		regexp.MustCompile(`(?m)^  population.resident_registration\s+public_security\s+\d+`),
		regexp.MustCompile(`(?m)^  health.vaccination\s+health\s+\d+\s+(\d+)\s+\d+\s+\d+`), // no base database, but the epidemic theme holds it
		regexp.MustCompile(`ClickHouse events\s+5000 \(events published: 5000\) ok`),
		// No password on a command line: pgpass and a client configuration hold them.
		regexp.MustCompile(`(?m)^  PGPASSFILE=\S+/pgpass psql 'postgres://postgres@[^':]+:\d+/jutong_demo\?sslmode=disable' -c`),
		regexp.MustCompile(`(?m)^  clickhouse-client --config-file \S+/clickhouse-client.xml --database jutong_demo`),
		regexp.MustCompile(`\(5 rows\)`),                     // psql ran and printed enterprises
		regexp.MustCompile(`(?m)^market_supervision\t\d+\t`), // clickhouse-client ran
		regexp.MustCompile(`refused at the door\s+(\d+) of (\d+) corrupted records`),
		regexp.MustCompile(`health\s+population.resident_registration: grant app-\w+ \(granted\), read [1-9]\d* records from _jutong.feed.health.population.resident_registration.app-\w+`),
		regexp.MustCompile(`e.g. citizen_id=\d{6}\*{8}\d{3}[0-9X] `), // masked for health
		regexp.MustCompile(`tax\s+legal_person.enterprise_registration: grant app-\w+ \(granted\), read [1-9]\d* records from legal_person.enterprise_registration\n`),
		regexp.MustCompile(`(?m)^│ market_supervision\s+│\s+\d+ │\s+[1-9]\d* │\s+0\.\d+ │`),                // the reject-rate scorecard
		regexp.MustCompile(`market_supervision corrects it \(event [0-9a-f-]+\): corrected, in time true`), // a dispute, corrected
		regexp.MustCompile(`receipt clickhouse .* offset \d+, landed`),
		regexp.MustCompile(`receipt postgres .* offset \d+, landed`),
		// health's analysts: their own ClickHouse user, the key a pseudonym, and the audit line.
		regexp.MustCompile(`An analyst \(health's, ClickHouse user jutong_analyst_health, database jutong_demo_analyst_health`),
		regexp.MustCompile(`(?m)^    k[0-9a-f]{32}  \S+  \d{6}$`),
		regexp.MustCompile(`Open data \(开放系统\): \d+ datasets in the open catalog, \d+ released de-identified \([1-9]\d* releases made now\)`),
		regexp.MustCompile(`its audit line: \S+ db_read health read \d+ rows of .*clickhouse: `),
	} {
		if !want.MatchString(s) {
			t.Errorf("summary lacks %s", want)
		}
	}
	if m := regexp.MustCompile(`refused at the door\s+(\d+) of (\d+)`).FindStringSubmatch(s); m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("refused vs corrupted: %v", m)
	}
	m := regexp.MustCompile(`PostgreSQL rows\s+(\d+) \(distinct live keys of the items in base and theme databases: (\d+)\)`).FindStringSubmatch(s)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Fatalf("PostgreSQL rows vs live keys: %v", m)
	}
}
