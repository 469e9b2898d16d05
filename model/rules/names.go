package rules

// The rules a record is checked by, by name: the name a refusal carries (in
// the SDK's error, the gateway's answer, the quarantine and the
// department's rejects) and the rule label of jutong_quarantined_events_total.
// The identifier checks name their own rules (uscc.checksum,
// citizen_id.birth_date, division.province, ...: package ident), and the
// field rules theirs (package field); docs/publishing.md lists them all.
const (
	// Where the record belongs: checked first, so that a department learns
	// nothing of records that are not its own.
	ItemUnknown = "item.unknown" // no catalog item of that code, or none named
	SourceOwner = "source.owner" // the publisher is not the item's source
	ItemNoTopic = "item.no_topic"
	KindUnknown = "kind.unknown" // an inbox record of a kind the bus does not know

	// Its form.
	RecordSize         = "record.size" // larger than the item's max_record_bytes
	SchemaDecode       = "schema.decode"
	SchemaEncode       = "schema.encode"
	SchemaType         = "schema.type"
	SchemaEnum         = "schema.enum"
	SchemaUnknownField = "schema.unknown_field"
	JSONSyntax         = "json.syntax"
	CSVSyntax          = "csv.syntax"
	CSVColumns         = "csv.columns"
	TextNUL            = "text.nul"
	TextUTF8           = "text.utf8" // bytes that are not UTF-8, lone UTF-16 surrogate escapes

	// The change event.
	Op              = "op"
	KeyRequired     = "key.required"
	KeyMatch        = "key.match"
	KeyDuplicate    = "key.duplicate" // a key twice in one extract (the file adapter)
	EventIDRequired = "event_id.required"
	EventIDLength   = "event_id.length"
	DeleteData      = "delete.data"
	DataRequired    = "data.required"
	EventTimeFuture = "event_time.future" // later than the bus's clock by more than EventTimeSkew

	// A record received from another bus (docs/federation.md).
	UpstreamProvenance = "upstream.provenance" // its provenance is malformed, or names another bus or item
	UpstreamSchema     = "upstream.schema"     // the upstream record does not fit the item here (the bridge keeps it)
	UpstreamItem       = "upstream.item"       // the upstream topic maps to no item of this catalog (the bridge keeps it)

	// Its values.
	Required         = "required"
	Blank            = "blank"
	DecimalScale     = "decimal.scale"
	DecimalPrecision = "decimal.precision"
	RangeMin         = "range.min"
	RangeMax         = "range.max"

	// A client's own refusal notice that says nothing readable.
	RefusedUnreadable = "refused.unreadable"
)
