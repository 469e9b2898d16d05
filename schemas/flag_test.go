package schemas_test

import (
	"slices"
	"testing"
	"time"

	"github.com/jutong/jutong/schemas"
)

func TestFlagRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 2, 8, 30, 1, 234_000_000, time.FixedZone("CST", 8*3600))
	f := schemas.Flag{Item: "population.resident_registration", Key: "500101199001011234", Disputes: []string{"d1", "d2"}, Fields: []string{"name"}, At: at}
	got, err := schemas.DecodeFlag(schemas.Frame(nil, 7, f.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Item != f.Item || got.Key != f.Key || !slices.Equal(got.Disputes, f.Disputes) || !slices.Equal(got.Fields, f.Fields) || !got.At.Equal(at) {
		t.Fatalf("round trip: %+v, want %+v", got, f)
	}
	// A cleared flag: no disputes, no fields.
	got, err = schemas.DecodeFlag(schemas.Frame(nil, 7, schemas.Flag{Item: f.Item, Key: f.Key, At: at}.Encode()))
	if err != nil || len(got.Disputes) != 0 || len(got.Fields) != 0 {
		t.Fatalf("cleared: %+v %v", got, err)
	}
	if _, err := schemas.ParseAvro(schemas.FlagSchema); err != nil {
		t.Fatalf("schemas.FlagSchema: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte(`{"item":"x"}`), schemas.Frame(nil, 7, []byte{0x02})} {
		if _, err := schemas.DecodeFlag(bad); err == nil {
			t.Errorf("schemas.DecodeFlag(%q) should fail", bad)
		}
	}
}
