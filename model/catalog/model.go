package catalog

import (
	"strings"
	"time"
)

// Catalog is a loaded, validated catalog. It is read-only after Load.
type Catalog struct {
	// Bus is this bus's name among federated buses (a city's, a district's,
	// a ministry's: docs/federation.md); it begins the provenance of the
	// records other buses receive from it. Default DefaultBus.
	Bus         string       `json:"bus,omitempty"`
	Departments []Department `json:"departments"`
	// Authority is the department that runs the bus and reviews every
	// application first (the data authority, 大数据发展局).
	Authority string `json:"authority"`
	// Calendar is the working-day calendar approval deadlines count in
	// (calendar.json; weekends are rest days unless listed as workdays).
	Calendar Calendar `json:"-"`
	Bases    []Base   `json:"bases"`
	// TopicDefaults apply to every item topic unless the item overrides them.
	TopicDefaults TopicConfig `json:"topic_defaults"`
	Items         []*Item     `json:"items"`
	Themes        []*Theme    `json:"themes"`
	// Lists are the lists shared with neighbouring regions' buses
	// (lists/*.json).
	Lists []*SharedList `json:"lists,omitempty"`

	deptByCode  map[string]*Department
	itemByCode  map[string]*Item
	themeByCode map[string]*Theme
}

// Calendar lists the public holidays (rest days, weekdays included) and the
// adjusted working days (weekend days worked, 调休) as YYYY-MM-DD dates.
type Calendar struct {
	Timezone string   `json:"timezone"` // IANA name; default Asia/Shanghai
	Holidays []string `json:"holidays"`
	Workdays []string `json:"workdays"`
}

// TopicConfig is how an item's topic is laid out in Kafka; zero values
// mean "the catalog default" (and, there, Kafka's default).
type TopicConfig struct {
	Partitions        int32  `json:"partitions,omitempty"`
	ReplicationFactor int16  `json:"replication_factor,omitempty"`
	RetentionMs       int64  `json:"retention_ms,omitempty"` // -1: keep forever
	CleanupPolicy     string `json:"cleanup_policy,omitempty"`
}

// Theme is a theme database (主题数据库): a set of items for one use, plus
// SQL views over their tables (referenced as <domain>.<name>, the item code).
type Theme struct {
	Code   string   `json:"code"`
	Name   string   `json:"name"`
	NameEN string   `json:"name_en"`
	Items  []string `json:"items"`
	Views  []View   `json:"views"`

	file string
}

// View is a named SQL view of a theme database.
type View struct {
	Name string `json:"name"`
	SQL  string `json:"sql"`
}

// Department is a source or consumer of data, and a Kafka principal.
type Department struct {
	Code      string `json:"code"`
	Name      string `json:"name"`
	NameEN    string `json:"name_en"`
	Principal string `json:"principal"`
	// Bus, when set, says the department stands for another bus (the
	// city's, a district's, a ministry's): its principal is that bus's
	// bridge, which publishes here the items the other bus granted this
	// one, and only those (items with Upstream on that bus).
	Bus string `json:"bus,omitempty"`
}

// DefaultBus is a catalog's bus name when it names none.
const DefaultBus = "jutong"

// BusName is the catalog's bus name (DefaultBus when it names none).
func (c *Catalog) BusName() string {
	if c.Bus == "" {
		return DefaultBus
	}
	return c.Bus
}

// Upstream says an item is received from another bus: the item Item of the
// bus Bus, as that bus's grant to this one delivers it (its fields
// projected and masked), carried by the bridge (docs/federation.md).
type Upstream struct {
	Bus  string `json:"bus"`  // the upstream bus, as its department here names it (Department.Bus)
	Item string `json:"item"` // the item's code on the upstream bus
}

// UpstreamField is the field every received item carries: the record's
// provenance on the upstream bus (bus, department, item, topic, partition,
// offset; package model/upstream), checked at the door.
const UpstreamField = "upstream"

// Base is one of the four base databases (基础数据库).
type Base struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	NameEN string `json:"name_en"`
}

// ShareType says who may read an item (共享类型).
type ShareType string

// The three share types.
const (
	ShareUnconditional ShareType = "unconditional" // 无条件共享
	ShareConditional   ShareType = "conditional"   // 有条件共享
	ShareNone          ShareType = "none"          // 不予共享
)

// Item is a catalog item: one kind of record owned by one source department,
// published on its own topic.
type Item struct {
	Code   string `json:"code"` // <base or domain>.<name>, e.g. legal_person.enterprise_registration
	Name   string `json:"name"` // Chinese name
	NameEN string `json:"name_en"`
	Source string `json:"source"` // department code: the one authoritative source
	Base   string `json:"base,omitempty"`
	Key    string `json:"key"` // the business key field
	// Lookup lists the other fields a granted department may query the
	// current state by (identifiers: a citizen ID, a USCC); each is indexed
	// in PostgreSQL. The business key always is.
	Lookup []string  `json:"lookup,omitempty"`
	Share  ShareType `json:"share"`
	// LegalBasis is required when Share is none (不予共享须有法律依据).
	LegalBasis string `json:"legal_basis,omitempty"`
	// Open is the open-data type (开放类型); same three values as Share.
	Open ShareType `json:"open"`
	// OpenLegalBasis is why an item is not opened (不予开放须有依据, as
	// the negative list): required when Open is none, unless LegalBasis
	// (the item is not even shared) says it.
	OpenLegalBasis string `json:"open_legal_basis,omitempty"`
	// UpdateFrequency is how often the source must publish (responsibility list):
	// realtime, daily, weekly, monthly, quarterly or yearly.
	UpdateFrequency string `json:"update_frequency"`
	// TopicSettings override the catalog's topic defaults for this item.
	TopicSettings TopicConfig `json:"topic,omitempty"`
	// MaxRecordBytes bounds one change event as encoded (default
	// DefaultMaxRecordBytes): a larger one is refused at the door with rule
	// record.size, and kept in the quarantine as its first bytes and a
	// SHA-256.
	MaxRecordBytes int `json:"max_record_bytes,omitempty"`
	// DisputeDays is how many working days the source has to check a
	// dispute of one of the item's records and correct it or say why not
	// (default DefaultDisputeDays).
	DisputeDays int `json:"dispute_days,omitempty"`
	// OpenAggregates are counts released beside an open item's records
	// (docs/open.md): by the fields named, as released (after their open
	// rules), with counts below MinCount suppressed.
	OpenAggregates []OpenAggregate `json:"open_aggregates,omitempty"`
	// OpenHistory releases, with each release of an open item, its changes
	// since the previous one (rows added and removed, as released).
	OpenHistory bool `json:"open_history,omitempty"`
	// Upstream, when set, says the item is another bus's, received here
	// through the bridge of its source (a department with Bus set).
	Upstream *Upstream `json:"upstream,omitempty"`
	Fields   []*Field  `json:"fields"`

	file     string
	fieldIdx map[string]int
	themes   []string
}

// DefaultDisputeDays is the source's deadline for a dispute, in working
// days, unless the item sets its own (5, as comparable cities do).
const DefaultDisputeDays = 5

// DisputeDeadline is the item's dispute deadline in working days.
func (it *Item) DisputeDeadline() int {
	if it.DisputeDays > 0 {
		return it.DisputeDays
	}
	return DefaultDisputeDays
}

// DefaultMaxRecordBytes is the size limit of an item's change event unless
// the item sets its own: below Kafka's default message limit (1 MiB), with
// room for the framing and headers.
const DefaultMaxRecordBytes = 900 << 10

// RecordLimit is the size limit of one of the item's change events, encoded.
func (it *Item) RecordLimit() int {
	if it.MaxRecordBytes > 0 {
		return it.MaxRecordBytes
	}
	return DefaultMaxRecordBytes
}

// FieldType is a field's logical type; it maps to Avro, PostgreSQL and ClickHouse types.
type FieldType string

// The field types.
const (
	TypeString    FieldType = "string"
	TypeLong      FieldType = "long"
	TypeDouble    FieldType = "double"
	TypeBoolean   FieldType = "boolean"
	TypeDecimal   FieldType = "decimal"   // with Precision and Scale
	TypeDate      FieldType = "date"      // a calendar day
	TypeTimestamp FieldType = "timestamp" // milliseconds, UTC
	TypeEnum      FieldType = "enum"      // one of Symbols
)

// Field is an information item (信息项) of a catalog item.
type Field struct {
	Name      string    `json:"name"`
	Title     string    `json:"title"` // Chinese label
	Type      FieldType `json:"type"`
	Required  bool      `json:"required,omitempty"`
	Precision int       `json:"precision,omitempty"`
	Scale     int       `json:"scale,omitempty"`
	Symbols   []string  `json:"symbols,omitempty"`
	// Rules are content checks applied at the door, by name: those of
	// package model/rules/field ("uscc", "citizen_id", "division",
	// "not_future").
	Rules []string `json:"rules,omitempty"`
	// Min and Max bound long, double and decimal values (inclusive).
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
	// Grade is the security grade 1 (public) to 4 (most sensitive).
	Grade int `json:"grade"`
	// Open is how the field is de-identified when its item is released to
	// the public (OpenClear, OpenDrop, OpenMask, OpenYear, OpenRegion);
	// empty: clear up to grade 2, dropped above (docs/open.md).
	Open string `json:"open,omitempty"`
}

// The de-identification rules of an open release.
const (
	OpenClear  = "clear"  // released as is (grade 1 and 2 only)
	OpenDrop   = "drop"   // not released
	OpenMask   = "mask"   // released masked (as the feeds mask)
	OpenYear   = "year"   // a date or time released as its year
	OpenRegion = "region" // a division code released as its city's (the first 4 digits, then 00)
)

// OpenAggregate is one released table of counts of an open item.
type OpenAggregate struct {
	Name     string   `json:"name"`      // e.g. by_region: the release's file is <release>.<name>.csv
	GroupBy  []string `json:"group_by"`  // fields, each released (not dropped)
	MinCount int      `json:"min_count"` // a count below it is released as "<MinCount" (at least 2)
}

// OpenGrade is the highest grade a field may be released in clear at.
const OpenGrade = 2

// OpenRule is how f is released: its Open, or the default for its grade.
func (f *Field) OpenRule() string {
	if f.Open != "" {
		return f.Open
	}
	if f.Grade <= OpenGrade {
		return OpenClear
	}
	return OpenDrop
}

// Department returns the department with code, or nil.
func (c *Catalog) Department(code string) *Department { return c.deptByCode[code] }

// Item returns the item with code, or nil.
func (c *Catalog) Item(code string) *Item { return c.itemByCode[code] }

// Theme returns the theme database with code, or nil.
func (c *Catalog) Theme(code string) *Theme { return c.themeByCode[code] }

// TopicConfig returns the item's topic settings with the catalog defaults filled in.
func (c *Catalog) TopicConfig(it *Item) TopicConfig {
	t, d := it.TopicSettings, c.TopicDefaults
	if t.Partitions == 0 {
		t.Partitions = d.Partitions
	}
	if t.ReplicationFactor == 0 {
		t.ReplicationFactor = d.ReplicationFactor
	}
	if t.RetentionMs == 0 {
		t.RetentionMs = d.RetentionMs
	}
	if t.CleanupPolicy == "" {
		t.CleanupPolicy = d.CleanupPolicy
	}
	return t
}

// Topic is the Kafka topic that carries the item's change events.
func (it *Item) Topic() string { return it.Code }

// Themes lists the theme databases that use the item.
func (it *Item) Themes() []string { return it.themes }

// Subject is the schema registry subject of the item's value schema.
func (it *Item) Subject() string { return it.Topic() + "-value" }

// Field returns the field called name, or nil.
func (it *Item) Field(name string) *Field {
	if i, ok := it.fieldIdx[name]; ok && i < len(it.Fields) {
		return it.Fields[i]
	}
	return nil
}

// WithFields returns a copy of the item with other fields (a grant's
// projection, a schema evolution), indexed like a loaded item's.
func (it *Item) WithFields(fields []*Field) *Item {
	c := *it
	c.Fields = fields
	c.fieldIdx = make(map[string]int, len(fields))
	for i, f := range fields {
		c.fieldIdx[f.Name] = i
	}
	return &c
}

// KeyField returns the business key field.
func (it *Item) KeyField() *Field { return it.Field(it.Key) }

// Namespace splits the item code into its domain (the part before the first
// dot) and name; the PostgreSQL sink uses them as schema and table.
func (it *Item) Namespace() (domain, name string) {
	d, n, _ := strings.Cut(it.Code, ".")
	return d, n
}

// HasRule reports whether the field carries the named rule.
func (f *Field) HasRule(rule string) bool {
	for _, r := range f.Rules {
		if r == rule {
			return true
		}
	}
	return false
}

// UpdateInterval is the longest an item may go without a change before its
// source counts as late against its update frequency (a realtime item: an
// hour; a monthly one: 31 days).
func (it *Item) UpdateInterval() time.Duration {
	day := 24 * time.Hour
	switch it.UpdateFrequency {
	case "realtime":
		return time.Hour
	case "daily":
		return day
	case "weekly":
		return 7 * day
	case "monthly":
		return 31 * day
	case "quarterly":
		return 92 * day
	default: // yearly
		return 366 * day
	}
}
