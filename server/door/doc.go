// Package door is the bus's door: every record that reaches an item topic
// has passed it, whatever client the department used.
//
// Departments cannot write item topics. Each writes to its own inbox
// (topicname.Inbox), which only it may write; the door consumes the inboxes
// and, for each record, in one Kafka transaction with the inbox offsets
// (consume-transform-produce), forwards it to the item's topic or refuses it
// to the quarantine (and to the department's own rejects topic) with the
// rule, field and reason. The HTTP gateway, which runs inside the bus, calls
// the same door (Admit) and answers each line with its outcome.
//
// The door, not the record, says who published: source.department is the
// inbox's owner (the gateway's authenticated department), publish_time is
// the bus's clock when the door forwarded it (the department's own time
// stays in event_time). Checks, in order: the item exists and the
// department is its source (before anything else, so that a department can
// learn nothing of another's records), the record's size, that it decodes
// with the item's schema, the record rules (model/rules), and the event
// id: an id accepted within the window (24 hours by default) is answered
// "duplicate" with the original position, across restarts, because the
// accepted ids are kept in a compacted topic (topicname.DoorIDs) written in
// the same transactions as the records they name.
package door
