// Package topicname owns the names of Jutong's own Kafka topics: the
// internal topics (every one under the "_jutong." prefix, writable by the bus
// alone) and the masked feeds of grants, built and parsed here and nowhere
// else. It imports nothing of Jutong, so that the SDKs, the sinks and the
// bus can all depend on it without depending on each other.
//
// An item's own topic is its catalog code (catalog.Item.Topic).
package topicname

import (
	"slices"
	"strings"
)

// Prefix starts the name of every topic that Jutong itself owns.
const Prefix = "_jutong."

// The internal topics.
const (
	Schemas        = Prefix + "schemas"         // the schema registry's state (compacted)
	Quarantine     = Prefix + "quarantine"      // records refused at the door, with the rule
	DoorIDs        = Prefix + "door_ids"        // event ids the door accepted, for retries (compact, delete)
	DeadLetter     = Prefix + "deadletter"      // records a sink can never write, with the error
	Control        = Prefix + "control"         // applications and grants (compacted)
	FeedLedger     = Prefix + "feed_offsets"    // every feed's position in its item's topic (compacted)
	Audit          = Prefix + "audit"           // the audit trail
	AuditPositions = Prefix + "audit_positions" // the read auditor's positions (compacted)
	Disputes       = Prefix + "disputes"        // disputes of shared records (compacted)
	Proposals      = Prefix + "proposals"       // proposals of catalog items and their versions (compacted)
)

// InboxPrefix, CheckpointsPrefix and RejectsPrefix start the names of the
// departments' own topics.
const (
	InboxPrefix       = Prefix + "inbox."
	CheckpointsPrefix = Prefix + "checkpoints."
	RejectsPrefix     = Prefix + "rejects."
)

// Inbox is the topic a department publishes to: the only topic it may
// write besides its checkpoints. The door reads it, checks every record
// against the contract and forwards it to the item's topic or to the
// quarantine.
func Inbox(dept string) string { return InboxPrefix + dept }

// Checkpoints is the compacted topic where a department's adapters keep
// their positions, written in the same transactions as their inbox records;
// only the department (and the bus) may read or write it.
func Checkpoints(dept string) string { return CheckpointsPrefix + dept }

// Rejects is a department's own copy of its quarantined records, readable by
// the department and the data authority only.
func Rejects(dept string) string { return RejectsPrefix + dept }

// InboxOwner is the department whose inbox topic is; ok is false for any
// other topic.
func InboxOwner(topic string) (dept string, ok bool) {
	dept, ok = strings.CutPrefix(topic, InboxPrefix)
	return dept, ok && dept != "" && !strings.Contains(dept, ".")
}

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
	if len(parts) != 4 || slices.Contains(parts, "") { // dept, domain, name, grant
		return "", "", "", false
	}
	return parts[0], parts[1] + "." + parts[2], parts[3], true
}

// FlagsPrefix starts every flags topic's name.
const FlagsPrefix = Prefix + "flags."

// Flags is the compacted topic holding the dispute flags of the records of
// a topic that departments read (an item's topic, or a grant's feed), so
// that the topic itself carries only records of its registered schema:
// _jutong.flags.<item> or _jutong.flags.feed.<dept>.<item>.<grant>. Whoever
// may read the topic may read its flags.
func Flags(topic string) string { return FlagsPrefix + strings.TrimPrefix(topic, Prefix) }

// FlagsOf is the topic whose records' flags a flags topic holds; ok is
// false for any other name.
func FlagsOf(flags string) (topic string, ok bool) {
	rest, found := strings.CutPrefix(flags, FlagsPrefix)
	if !found || rest == "" {
		return "", false
	}
	if strings.HasPrefix(rest, "feed.") {
		t := Prefix + rest
		_, _, _, ok := ParseFeed(t)
		return t, ok
	}
	if strings.Count(rest, ".") != 1 || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") {
		return "", false // an item's code is <domain>.<name>
	}
	return rest, true
}

// Internal reports whether a topic is one of Jutong's own.
func Internal(topic string) bool { return strings.HasPrefix(topic, Prefix) }
