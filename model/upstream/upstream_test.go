package upstream

import (
	"net/url"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	p := Provenance{Bus: "city", Department: "public_security", Item: "population.resident_registration",
		Topic: "_jutong.feed.district_a.population.resident_registration.g1", Partition: 3, Offset: 4711}
	s := p.String()
	if !strings.HasPrefix(s, "jutong://city/public_security/population.resident_registration?") {
		t.Fatalf("form: %s", s)
	}
	q := url.Values{}
	q.Set("topic", p.Topic)
	q.Set("partition", "3")
	q.Set("offset", "4711")
	if want := "jutong://city/public_security/population.resident_registration?" + q.Encode(); s != want {
		t.Fatalf("String() = %s, want %s", s, want)
	}
	got, err := Parse(s)
	if err != nil || got != p {
		t.Fatalf("Parse(%s) = %+v, %v", s, got, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{
		"", "city/public_security/x.y", "http://city/public_security/a.b?offset=1&partition=0&topic=t",
		"jutong://City/public_security/a.b?offset=1&partition=0&topic=t",
		"jutong://city/public_security?offset=1&partition=0&topic=t",
		"jutong://city/public_security/a.b?offset=-1&partition=0&topic=t",
		"jutong://city/public_security/a.b?offset=1&partition=x&topic=t",
		"jutong://city/public_security/a.b?offset=1&partition=0",
		"jutong://city/public_security/a.b?offset=1&partition=0&topic=t&extra=1",
		"jutong://city/public_security/a.b?topic=t&partition=0&offset=1", // not canonical
		"jutong://u@city/public_security/a.b?offset=1&partition=0&topic=t",
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
