// Package dispute is the platform's 疑义、错误快速校核机制: a department
// that reads an item and finds one of its records wrong raises a dispute
// (the record's key, the fields, what it believes is right and why); the
// dispute goes to the item's source with a deadline in working days (the
// catalog's calendar, the item's dispute_days, 5 by default); the source
// corrects the record (publishing the correcting change, whose event id the
// dispute keeps) or rejects the dispute with a reason; an overdue dispute
// is escalated to the data authority once. Every step is in the audit
// trail. A second dispute of the same record and field joins the open one.
//
// While a dispute is open the record is flagged: jutong.disputes_open in
// the PostgreSQL database of the base and theme databases (item, key,
// dispute id), which the lookups join into their answers.
//
// The state is a compacted Kafka topic (_jutong.disputes), one record per
// dispute, read back on start. One instance writes at a time (the bus's).
package dispute
