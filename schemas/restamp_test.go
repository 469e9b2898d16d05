package schemas_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// TestRestamp: for every catalog item, restamping the bytes a department
// sent gives exactly the bytes of the stamped event encoded again; a
// truncated record is refused.
func TestRestamp(t *testing.T) {
	cat, _ := catalog.Sample()
	now := time.Now().Truncate(time.Millisecond)
	for _, it := range cat.Items {
		s, err := schemas.For(it)
		if err != nil {
			t.Fatal(err)
		}
		g := synth.New(it, 3, now)
		g.DeleteEvery = 6
		for i := 0; i < 100; i++ {
			e := g.Next()
			e.Source = schemas.Source{Department: "someone_else", System: "系统", Adapter: "sdk"}
			if i%4 == 0 {
				synth.ClearOptional(it, e.Data)
			}
			if i%3 == 0 {
				e.EventTime = time.Time{} // the door sets it to the publish time
			}
			sent, err := s.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			stamped := *e
			stamped.Source.Department, stamped.PublishTime = it.Source, now
			if stamped.EventTime.IsZero() {
				stamped.EventTime = now
			}
			want, err := s.Encode(&stamped)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Restamp([]byte{0xAA}, sent, it.Source, stamped.EventTime, now)
			if err != nil {
				t.Fatalf("%s: %v", it.Code, err)
			}
			if got[0] != 0xAA || !bytes.Equal(got[1:], want) {
				t.Fatalf("%s event %d: restamped\n%x\nwant\n%x", it.Code, i, got[1:], want)
			}
			if _, err := s.Restamp(nil, sent[:len(sent)-1], it.Source, now, now); err == nil {
				t.Fatalf("%s: a truncated record restamped", it.Code)
			}
		}
	}
}
