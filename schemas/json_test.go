package schemas_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/synth"
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/schemas"
)

// TestJSONValuesMatchEncodingJSON: the hand-written renderer writes exactly
// what encoding/json writes for the portable values, on every catalog item
// and on strings that need escaping.
func TestJSONValuesMatchEncodingJSON(t *testing.T) {
	cat, _ := catalog.Sample()
	awkward := []string{"", "plain", `"quoted" \ back`, "tab\tnl\ncr\r", "ctl\x01\x1f", "<a&b>", "行\u2028分\u2029隔", "bad\xffutf8", "重庆市渝中区"}
	for _, it := range cat.Items {
		g := synth.New(it, 9, time.Now())
		for i := 0; i < 200; i++ {
			e := g.Next()
			if e.Data == nil {
				continue
			}
			if i < len(awkward) {
				for _, f := range it.Fields {
					if f.Type == catalog.TypeString {
						e.Data[f.Name] = awkward[i]
					}
				}
			}
			got, err := schemas.JSONValues(it, e.Data)
			if err != nil {
				t.Fatal(err)
			}
			want := []byte{'{'}
			for j, f := range it.Fields {
				if j > 0 {
					want = append(want, ',')
				}
				k, _ := json.Marshal(f.Name)
				v, err := json.Marshal(schemas.PortableValue(f, e.Data[f.Name]))
				if err != nil {
					t.Fatal(err)
				}
				want = append(append(append(want, k...), ':'), v...)
			}
			want = append(want, '}')
			if string(got) != string(want) {
				t.Fatalf("%s:\n got %s\nwant %s", it.Code, got, want)
			}
		}
	}
}
