package bridge

import (
	"bytes"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/model/upstream"
	"github.com/jutong/jutong/pipeline/feed"
	"github.com/jutong/jutong/schemas"
)

// TestReceive: for every sample item, through a grant of every field and
// through a masked one (the key masked where its grade allows), the bytes
// the bridge forwards (schemas.Receive on the feed's record) are byte for
// byte the received item's encoding of the event translated the slow way
// (decoded, the key set to the record's, the provenance added, stamped),
// and the upstream layout's fingerprint is the received item's view's.
func TestReceive(t *testing.T) {
	cat, _ := catalog.Sample()
	now := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	for _, it := range cat.Items {
		var all []string
		for _, f := range it.Fields {
			all = append(all, f.Name)
		}
		for _, g := range []feed.Grant{{ID: "g-all", Item: it.Code, Fields: all, Grade: 4}, {ID: "g-masked", Item: it.Code, Fields: all[:len(all)/2+1], Grade: 2}} {
			p := feed.Project(it, g)
			feedSchema, err := p.Schema()
			if err != nil {
				t.Fatal(err)
			}
			recv := ReceivedItem(it, g, "city", "city_bus")
			recvSchema, err := schemas.For(recv)
			if err != nil {
				t.Fatal(err)
			}
			var fields []*catalog.Field
			for _, f := range recv.Fields {
				if f.Name != catalog.UpstreamField {
					fields = append(fields, f)
				}
			}
			view, err := schemas.For(recv.WithFields(fields))
			if err != nil {
				t.Fatal(err)
			}
			if view.Avro.Fingerprint() != feedSchema.Avro.Fingerprint() {
				t.Fatalf("%s %s: the view's layout is not the feed's:\n%s\n%s", it.Code, g.ID, view.JSON, feedSchema.JSON)
			}
			gen := synth.New(it, 5, now)
			gen.DeleteEvery = 4
			for i := 0; i < 20; i++ {
				e := gen.Next()
				e.Source = schemas.Source{Department: it.Source, System: "src", Adapter: "sdk"}
				e.PublishTime = now
				fe := *e
				fe.Key, fe.Data = p.Key(e.Key), p.Apply(e.Data)
				feedBytes, err := feedSchema.Encode(&fe)
				if err != nil {
					t.Fatal(err)
				}
				prov := upstream.Provenance{Bus: "city", Department: it.Source, Item: it.Code, Topic: "t", Partition: 1, Offset: int64(i)}
				src := schemas.Source{Department: "city_bus", System: "bridge:city", Adapter: "bridge"}
				stamp := now.Add(time.Minute)
				got, err := view.Receive(nil, feedBytes, func(d string) string {
					if d != it.Source {
						t.Fatalf("source department %q", d)
					}
					return prov.String()
				}, src, stamp)
				if err != nil {
					t.Fatal(err)
				}
				slow := fe
				slow.Source, slow.PublishTime = src, stamp
				if fe.Data != nil {
					slow.Data = map[string]any{}
					for k, v := range fe.Data {
						slow.Data[k] = v
					}
					slow.Data[it.Key] = fe.Key
					slow.Data[catalog.UpstreamField] = prov.String()
				}
				want, err := recvSchema.Encode(&slow)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s %s event %d: Receive differs from the slow way", it.Code, g.ID, i)
				}
			}
		}
	}
}
