package topicname

import "testing"

func TestFeedRoundTrip(t *testing.T) {
	name := Feed("health", "population.resident_registration", "g42")
	if name != "_jutong.feed.health.population.resident_registration.g42" {
		t.Fatalf("Feed = %q", name)
	}
	d, i, g, ok := ParseFeed(name)
	if !ok || d != "health" || i != "population.resident_registration" || g != "g42" {
		t.Fatalf("ParseFeed(%q) = %q %q %q %v", name, d, i, g, ok)
	}
	for _, bad := range []string{
		"population.resident_registration", Quarantine, FeedPrefix + "health.x.g1",
		FeedPrefix + "health..x.g1", FeedPrefix + "a.b.c.d.e",
	} {
		if _, _, _, ok := ParseFeed(bad); ok {
			t.Errorf("ParseFeed(%q) should fail", bad)
		}
	}
	if !Internal(Audit) || Internal("legal_person.enterprise_registration") {
		t.Error("Internal")
	}
}
