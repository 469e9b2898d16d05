package cli

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/internal/app/federation"
	"github.com/jutong/jutong/internal/kafkaconn"
	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// TestFederationUnderKills: a city bus and two district buses, each a
// jutong dev process, and a bridge process per district. The city's
// departments publish for half a minute while district yuzhong's bridge is
// killed (kill -9) every few seconds and district jiangbei's bus every ten:
// afterwards each district's inbox holds every city change exactly once
// (the bridge neither lost nor doubled one), its ClickHouse every change
// once, its PostgreSQL every record, masked as the grant says.
func TestFederationUnderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three buses")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f, err := federation.Start(ctx, federation.Options{DataDir: t.TempDir(), Districts: 2, FreePorts: true, Verbose: true,
		Command: func(args ...string) *exec.Cmd {
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), envChildArgs+"="+strings.Join(args, "\n"))
			return cmd
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	// Publish while killing.
	published := map[string]map[string]bool{} // item -> event ids
	keys := map[string]map[string]bool{}      // item -> keys
	var mu sync.Mutex
	var lastEnterprise *schemas.Event
	clearIDs := map[string]bool{} // the residents' citizen IDs, which the districts' grants mask
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for round := uint64(1); ; round++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, r := range federation.DefaultReceives {
				evs, err := f.Publish(ctx, r.Item, 150, round*10+uint64(len(r.Item)))
				if err != nil {
					t.Errorf("publish %s: %v", r.Item, err)
					return
				}
				mu.Lock()
				if published[r.Item] == nil {
					published[r.Item], keys[r.Item] = map[string]bool{}, map[string]bool{}
				}
				for _, e := range evs {
					published[r.Item][e.ID] = true
					keys[r.Item][e.Key] = true
					if r.Item == "legal_person.enterprise_registration" && e.Op != schemas.OpDelete {
						lastEnterprise = e
					}
					if id, ok := e.Data["citizen_id"].(string); ok {
						clearIDs[id] = true
					}
				}
				mu.Unlock()
			}
			time.Sleep(time.Second)
		}
	})
	killUntil := time.Now().Add(30 * time.Second)
	kills := 0
	for n := 0; time.Now().Before(killUntil); n++ {
		time.Sleep(3 * time.Second)
		f.Bridge(0).Kill()
		if err := f.StartBridge(0); err != nil {
			t.Fatal(err)
		}
		kills++
		if n%3 == 2 {
			d := f.Districts[1]
			d.Proc().Kill()
			if err := f.StartBus(ctx, d); err != nil {
				t.Fatal(err)
			}
			kills++
		}
	}
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d kills; published %d residents, %d enterprises", kills, len(published[federation.DefaultReceives[0].Item]), len(published[federation.DefaultReceives[1].Item]))

	for _, d := range f.Districts {
		k, err := d.Admin()
		if err != nil {
			t.Fatal(err)
		}
		opts, err := k.Opts()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range federation.DefaultReceives {
			want := published[r.Item]
			// The inbox: every change exactly once, read-committed.
			deadline := time.Now().Add(3 * time.Minute)
			for {
				seen := map[string]int{}
				err := kafkaconn.ReadAll(ctx, opts, topicname.Inbox(federation.CityDepartment), func(rec *kgo.Record) {
					if header(rec, inbox.HeaderItem) != r.Item {
						return
					}
					seen[eventID(t, rec.Value)]++
				})
				if err != nil {
					t.Fatal(err)
				}
				doubled, missing := 0, 0
				for id, n := range seen {
					if n > 1 {
						doubled++
					}
					if !want[id] {
						t.Fatalf("%s: an event that was not published: %s", d.Name, id)
					}
				}
				for id := range want {
					if seen[id] == 0 {
						missing++
					}
				}
				if doubled > 0 {
					t.Fatalf("%s %s: %d events doubled in the inbox", d.Name, r.Item, doubled)
				}
				if missing == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s %s: %d of %d events never reached the inbox", d.Name, r.Item, missing, len(want))
				}
				time.Sleep(time.Second)
			}
			// ClickHouse: every change once; PostgreSQL: every record.
			chOpts, err := clickhouse.ParseDSN(d.CHDSN)
			if err != nil {
				t.Fatal(err)
			}
			ch, err := clickhouse.Open(chOpts)
			if err != nil {
				t.Fatal(err)
			}
			for {
				var n, uniq uint64
				if err := ch.QueryRow(ctx, `SELECT count(), uniqExact(event_id) FROM events WHERE item = ?`, r.Item).Scan(&n, &uniq); err != nil {
					t.Fatal(err)
				}
				if n > uniq {
					t.Fatalf("%s %s: %d events in ClickHouse, %d distinct", d.Name, r.Item, n, uniq)
				}
				if n == uint64(len(want)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s %s: %d events in ClickHouse, want %d", d.Name, r.Item, n, len(want))
				}
				time.Sleep(time.Second)
			}
			ch.Close()
			rows, err := waitRows(ctx, d.PGDSN, r.Item, len(keys[r.Item]), 2*time.Minute)
			if err != nil || rows != len(keys[r.Item]) {
				t.Fatalf("%s %s: %d rows in PostgreSQL, want %d (%v)", d.Name, r.Item, rows, len(keys[r.Item]), err)
			}
			if r.Item == "population.resident_registration" {
				pg, err := pgx.Connect(ctx, d.PGDSN)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				err = pg.QueryRow(ctx, `SELECT array_agg(citizen_id) FROM population.resident_registration`).Scan(&ids)
				pg.Close(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, id := range ids {
					if clearIDs[id] {
						t.Fatalf("%s holds the clear citizen ID %s: the grant masks it", d.Name, id)
					}
				}
			}
		}
	}

	// A dispute crosses the levels: yuzhong's civil affairs disputes an
	// enterprise's name; the bridge raises it on the city; the city's market
	// supervision corrects the record; the correction comes down and closes
	// the district's dispute with the district's receipts.
	c, err := f.CorrectAcross(ctx, 0, lastEnterprise, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Receipts) < 2 {
		t.Fatalf("the district's receipts: %+v", c.Receipts)
	}
	t.Logf("dispute %s (%s) -> %s (city), corrected by %s with receipts %+v", c.Down, c.District, c.Up, c.EventID, c.Receipts)
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// eventID reads the event id of a change event's record: the envelope's
// first field, after the Confluent framing (magic byte, schema id).
func eventID(t *testing.T, v []byte) string {
	t.Helper()
	if len(v) < 6 || v[0] != 0 {
		t.Fatalf("not a framed record: %q", v)
	}
	n, k := binary.Varint(v[5:])
	if k <= 0 || n < 0 || int(n) > len(v)-5-k {
		t.Fatalf("no event id in %q", v)
	}
	return string(v[5+k : 5+k+int(n)])
}
