package door

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/model/inbox"
	"github.com/jutong/jutong/model/quarantine"
	"github.com/jutong/jutong/model/topicname"
)

func TestIDIndexRoundTripAndWindow(t *testing.T) {
	at := time.UnixMilli(1_795_000_000_000)
	r := idRecord("legal_person.enterprise_registration", "id-1", Position{3, 42}, at)
	e, ok := parseIDEntry(r.Value)
	if !ok || e.pos != (Position{3, 42}) || e.atMs != at.UnixMilli() || string(r.Key) != idKey("legal_person.enterprise_registration", "id-1") {
		t.Fatalf("round trip: %+v %v", e, ok)
	}
	for _, bad := range []string{"", "1:2", "a:b:c", "1:2:3:4"} {
		if _, ok := parseIDEntry([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	x := idIndex{window: time.Hour}
	x.init()
	x.add("it", "id-1", Position{1, 7}, at)
	if pos, dup := x.lookup("it", "id-1", at.Add(59*time.Minute)); !dup || pos != (Position{1, 7}) {
		t.Fatalf("within the window: %v %v", pos, dup)
	}
	if _, dup := x.lookup("it", "id-1", at.Add(61*time.Minute)); dup {
		t.Fatal("an id past the window is still a duplicate")
	}
	if _, dup := x.lookup("other.item", "id-1", at); dup {
		t.Fatal("ids are per item")
	}
	// An id in the SDKs' form is kept compact, exactly: the same id in
	// capitals, or another item's, is another id.
	const u = "0f5e4d3c-2b1a-4098-a7b6-c5d4e3f2a1b0"
	x.add("it", u, Position{2, 8}, at)
	if pos, dup := x.lookup("it", u, at); !dup || pos != (Position{2, 8}) || len(x.uuids) != 1 {
		t.Fatalf("a UUID id: %v %v (%d compact)", pos, dup, len(x.uuids))
	}
	for _, other := range [][2]string{{"it", "0F5E4D3C-2B1A-4098-A7B6-C5D4E3F2A1B0"}, {"other.item", u}, {"it", u[:35] + "1"}} {
		if _, dup := x.lookup(other[0], other[1], at); dup {
			t.Errorf("%s %s taken for %s", other[0], other[1], u)
		}
	}
}

// The ids of a transaction go in records of up to idsPerRecord; reading
// them back (and a single id's record, as written before) restores them.
func TestIDRecordsRoundTrip(t *testing.T) {
	at := time.UnixMilli(1_795_000_000_000)
	var ids []accepted
	for i := range idsPerRecord + 1 {
		id := fmt.Sprintf("id-%d\n\t\"", i)
		if i%2 == 0 { // the SDKs' form, kept compact
			id = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		}
		ids = append(ids, accepted{item: "legal_person.enterprise_registration", id: id, pos: Position{int32(i % 6), int64(i)}})
	}
	recs := idRecords(ids, at)
	if len(recs) != 2 {
		t.Fatalf("%d records for %d ids", len(recs), len(ids))
	}
	x := idIndex{window: time.Hour}
	x.init()
	for _, r := range append(recs, idRecord("old.item", "id-old", Position{2, 9}, at)) {
		x.read(r, at.Add(time.Minute))
	}
	for _, a := range ids {
		if pos, dup := x.lookup(a.item, a.id, at.Add(time.Minute)); !dup || pos != a.pos {
			t.Fatalf("%q: %v %v, want %v", a.id, pos, dup, a.pos)
		}
	}
	if len(x.uuids) != idsPerRecord/2+1 {
		t.Errorf("%d ids kept compact, want %d", len(x.uuids), idsPerRecord/2+1)
	}
	if pos, dup := x.lookup("old.item", "id-old", at.Add(time.Minute)); !dup || pos != (Position{2, 9}) {
		t.Errorf("a single id's record: %v %v", pos, dup)
	}
	// Past the window, nothing is kept.
	y := idIndex{window: time.Hour}
	y.init()
	for _, r := range recs {
		y.read(r, at.Add(2*time.Hour))
	}
	if len(y.uuids)+len(y.other) != 0 {
		t.Errorf("%d ids kept past the window", len(y.uuids)+len(y.other))
	}
}

func TestInboxCandidates(t *testing.T) {
	refusal, _ := json.Marshal(quarantine.Record{Rule: "blank", Field: "name", Reason: "empty"})
	recs := []*kgo.Record{
		{Topic: topicname.Inbox("tax"), Partition: 2, Offset: 9, Value: []byte("v"),
			Headers: []kgo.RecordHeader{{Key: inbox.HeaderItem, Value: []byte("legal_person.tax_credit_rating")}}},
		{Topic: topicname.Inbox("tax"), Value: refusal, Headers: []kgo.RecordHeader{
			{Key: inbox.HeaderItem, Value: []byte("x.y")}, {Key: inbox.HeaderKind, Value: []byte(inbox.KindRefused)}}},
		{Topic: topicname.Inbox("tax"), Value: []byte("not json"), Headers: []kgo.RecordHeader{{Key: inbox.HeaderKind, Value: []byte(inbox.KindRefused)}}},
		{Topic: topicname.Inbox("tax"), Headers: []kgo.RecordHeader{{Key: inbox.HeaderKind, Value: []byte("forged-kind")}}},
	}
	c := inboxCandidates(recs)
	if c[0].Department != "tax" || c[0].Item != "legal_person.tax_credit_rating" || string(c[0].Value) != "v" ||
		c[0].Refused != nil || c[0].Source != topicname.Inbox("tax")+"/2/9" {
		t.Errorf("an event: %+v", c[0])
	}
	if c[1].Refused == nil || c[1].Refused.Rule != "blank" || c[1].Refused.Field != "name" {
		t.Errorf("a client's refusal: %+v", c[1].Refused)
	}
	if c[2].Refused == nil || c[2].Refused.Rule != "refused.unreadable" {
		t.Errorf("an unreadable refusal: %+v", c[2].Refused)
	}
	if c[3].Refused == nil || c[3].Refused.Rule != "kind.unknown" {
		t.Errorf("an unknown kind: %+v", c[3].Refused)
	}
}
