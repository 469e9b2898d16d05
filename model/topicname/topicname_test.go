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

func TestFlagsRoundTrip(t *testing.T) {
	for topic, want := range map[string]string{
		"population.resident_registration":                        "_jutong.flags.population.resident_registration",
		Feed("health", "population.resident_registration", "g42"): "_jutong.flags.feed.health.population.resident_registration.g42",
	} {
		got := Flags(topic)
		if got != want {
			t.Errorf("Flags(%q) = %q, want %q", topic, got, want)
		}
		back, ok := FlagsOf(got)
		if !ok || back != topic {
			t.Errorf("FlagsOf(%q) = %q %v, want %q", got, back, ok, topic)
		}
		if _, _, _, isFeed := ParseFeed(got); isFeed {
			t.Errorf("ParseFeed(%q) took a flags topic for a feed", got)
		}
		if !Internal(got) {
			t.Errorf("%q is not internal", got)
		}
	}
	for _, bad := range []string{"population.resident_registration", FlagsPrefix, FlagsPrefix + "a", FlagsPrefix + "a.b.c", FlagsPrefix + "feed.x.y", Quarantine} {
		if _, ok := FlagsOf(bad); ok {
			t.Errorf("FlagsOf(%q) should fail", bad)
		}
	}
}
