// Package topicname owns the names of Jutong's own Kafka topics: the
// internal topics (every one under the "_jutong." prefix, writable by the bus
// alone) and the masked feeds of grants, built and parsed here and nowhere
// else. It imports nothing of Jutong, so that the SDKs, the sinks and the
// bus can all depend on it without depending on each other.
//
// An item's own topic is its catalog code (catalog.Item.Topic).
package topicname

import "strings"

// Prefix starts the name of every topic that Jutong itself owns.
const Prefix = "_jutong."

// The internal topics.
const (
	Schemas        = Prefix + "schemas"         // the schema registry's state (compacted)
	Quarantine     = Prefix + "quarantine"      // records refused at the door, with the rule
	Checkpoints    = Prefix + "checkpoints"     // the adapters' checkpoints and key logs (compacted)
	DeadLetter     = Prefix + "deadletter"      // records a sink can never write, with the error
	Control        = Prefix + "control"         // applications and grants (compacted)
	FeedLedger     = Prefix + "feed_offsets"    // every feed's position in its item's topic (compacted)
	Audit          = Prefix + "audit"           // the audit trail
	AuditPositions = Prefix + "audit_positions" // the read auditor's positions (compacted)
)

// FeedPrefix starts every feed topic's name.
const FeedPrefix = Prefix + "feed."

// Feed is the topic of a department's grant on an item, when the grant
// drops or masks fields: _jutong.feed.<dept>.<item>.<grant>. Department
// codes and grant ids hold no dot; item codes hold exactly one
// (<domain>.<name>).
func Feed(dept, item, grant string) string { return FeedPrefix + dept + "." + item + "." + grant }

// DepartmentFeeds is the prefix of every feed topic of a department.
func DepartmentFeeds(dept string) string { return FeedPrefix + dept + "." }

// ParseFeed splits a feed topic's name into its department, item and grant;
// ok is false for any other name.
func ParseFeed(topic string) (dept, item, grant string, ok bool) {
	rest, found := strings.CutPrefix(topic, FeedPrefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 4 || slicesHasEmpty(parts) { // dept, domain, name, grant
		return "", "", "", false
	}
	return parts[0], parts[1] + "." + parts[2], parts[3], true
}

func slicesHasEmpty(parts []string) bool {
	for _, p := range parts {
		if p == "" {
			return true
		}
	}
	return false
}

// Internal reports whether a topic is one of Jutong's own.
func Internal(topic string) bool { return strings.HasPrefix(topic, Prefix) }
