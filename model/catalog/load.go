package catalog

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jutong/jutong/model/rules/field"
)

//go:embed data
var sample embed.FS

// Sample returns the sample catalog shipped with Jutong (a Chongqing-like city).
func Sample() (*Catalog, error) { return Load(SampleFS()) }

// SampleFS returns the files of the sample catalog, to copy and edit.
func SampleFS() fs.FS {
	sub, err := fs.Sub(sample, "data")
	if err != nil {
		panic(err) // the embedded tree always has data/
	}
	return sub
}

// Load reads a catalog laid out as catalog.json (departments, bases, topic
// defaults), items/*.json (one item per file) and themes/*.json (one theme
// database per file), and validates it.
func Load(fsys fs.FS) (*Catalog, error) {
	var c Catalog
	if err := readJSON(fsys, "catalog.json", &c); err != nil {
		return nil, err
	}
	if _, err := fs.Stat(fsys, "calendar.json"); err == nil {
		if err := readJSON(fsys, "calendar.json", &c.Calendar); err != nil {
			return nil, err
		}
	}
	files, err := fs.Glob(fsys, "items/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		var it Item
		if err := readJSON(fsys, f, &it); err != nil {
			return nil, err
		}
		it.file = f
		c.Items = append(c.Items, &it)
	}
	themes, err := fs.Glob(fsys, "themes/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(themes)
	for _, f := range themes {
		var th Theme
		if err := readJSON(fsys, f, &th); err != nil {
			return nil, err
		}
		th.file = f
		c.Themes = append(c.Themes, &th)
	}
	lists, err := fs.Glob(fsys, "lists/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(lists)
	for _, f := range lists {
		var l SharedList
		if err := readJSON(fsys, f, &l); err != nil {
			return nil, err
		}
		l.file = f
		c.Lists = append(c.Lists, &l)
	}
	if err := c.index(); err != nil {
		return nil, err
	}
	return &c, nil
}

func readJSON(fsys fs.FS, name string, v any) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("catalog: %s: %w", name, err)
	}
	return nil
}

// ValidationError is one problem found in a catalog, located by file, item and field.
type ValidationError struct {
	File, Item, Field string
	Problem           string
}

func (e *ValidationError) Error() string {
	loc := e.File
	if e.Item != "" {
		loc += ": item " + e.Item
	}
	if e.Field != "" {
		loc += ": field " + e.Field
	}
	return "catalog: " + loc + ": " + e.Problem
}

var (
	itemCodeRe  = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`)
	fieldNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	frequencies = map[string]bool{"realtime": true, "daily": true, "weekly": true, "monthly": true, "quarterly": true, "yearly": true}
	policies    = map[string]bool{"": true, "delete": true, "compact": true, "compact,delete": true}
)

func validShare(s ShareType) bool {
	return s == ShareUnconditional || s == ShareConditional || s == ShareNone
}

// index builds the lookup maps and validates; all problems are reported, joined.
func (c *Catalog) index() error {
	var p problems
	c.indexDepartments(p.add)
	c.indexItems(p.add)
	c.indexThemes(p.add)
	c.indexLists(p.add)
	return errors.Join(p...)
}

// problems collects a catalog's validation errors.
type problems []error

func (p *problems) add(file, item, field, format string, args ...any) {
	*p = append(*p, &ValidationError{file, item, field, fmt.Sprintf(format, args...)})
}

// adder reports one problem: the file, item and field it is about.
type adder func(file, item, field, format string, args ...any)

// indexDepartments indexes the departments and checks them, the authority
// and the calendar.
func (c *Catalog) indexDepartments(add adder) {
	c.deptByCode = make(map[string]*Department)
	for i := range c.Departments {
		d := &c.Departments[i]
		if d.Code == "" || d.Principal == "" {
			add("catalog.json", "", "", "department %d needs a code and a principal", i+1)
		}
		if _, dup := c.deptByCode[d.Code]; dup {
			add("catalog.json", "", "", "duplicate department code %q", d.Code)
		}
		c.deptByCode[d.Code] = d
	}
	if c.Bus != "" && !busNameRe.MatchString(c.Bus) {
		add("catalog.json", "", "", "bus %q: a bus's name is lower case letters, digits and _ (it begins every record's provenance on other buses)", c.Bus)
	}
	for _, d := range c.Departments {
		if d.Bus != "" && !busNameRe.MatchString(d.Bus) {
			add("catalog.json", "", "", "department %s: bus %q must be lower case letters, digits and _", d.Code, d.Bus)
		}
	}
	if c.Authority == "" || c.deptByCode[c.Authority] == nil {
		add("catalog.json", "", "", "authority %q must name a department (the data authority)", c.Authority)
	}
	for _, list := range [][]string{c.Calendar.Holidays, c.Calendar.Workdays} {
		for _, d := range list {
			if _, err := time.Parse(time.DateOnly, d); err != nil {
				add("calendar.json", "", "", "date %q is not YYYY-MM-DD", d)
			}
		}
	}
	if c.Calendar.Timezone != "" {
		if _, err := time.LoadLocation(c.Calendar.Timezone); err != nil {
			add("calendar.json", "", "", "timezone %q: %v", c.Calendar.Timezone, err)
		}
	}
}

// indexItems indexes the items and their fields and checks them.
func (c *Catalog) indexItems(add adder) {
	c.itemByCode = make(map[string]*Item)
	for _, it := range c.Items {
		f := it.file
		if !itemCodeRe.MatchString(it.Code) {
			add(f, it.Code, "", "code must look like domain.name in lower case (a-z, 0-9, _)")
		}
		if want := "items/" + it.Code + ".json"; f != "" && path.Clean(f) != want {
			add(f, it.Code, "", "file must be named %s", want)
		}
		if prev, dup := c.itemByCode[it.Code]; dup {
			add(f, it.Code, "", "duplicate item code (also in %s)", prev.file)
		}
		c.itemByCode[it.Code] = it
		c.checkItem(it, add)
	}
}

// checkItem checks one item and indexes its fields.
func (c *Catalog) checkItem(it *Item, add adder) {
	f := it.file
	bases := make(map[string]bool)
	for _, b := range c.Bases {
		bases[b.Code] = true
	}
	src := c.deptByCode[it.Source]
	if src == nil {
		add(f, it.Code, "", "unknown source department %q", it.Source)
	}
	c.checkUpstream(it, src, add)
	if it.Base != "" && !bases[it.Base] {
		add(f, it.Code, "", "unknown base database %q", it.Base)
	}
	if !validShare(it.Share) {
		add(f, it.Code, "", "share must be unconditional, conditional or none, not %q", it.Share)
	}
	if it.Share == ShareNone && strings.TrimSpace(it.LegalBasis) == "" {
		add(f, it.Code, "", "an item that is not shared needs its legal basis (legal_basis)")
	}
	if !validShare(it.Open) {
		add(f, it.Code, "", "open must be unconditional, conditional or none, not %q", it.Open)
	}
	if it.Open == ShareNone && strings.TrimSpace(it.OpenLegalBasis) == "" && strings.TrimSpace(it.LegalBasis) == "" {
		add(f, it.Code, "", "an item that is not opened needs its legal basis (open_legal_basis)")
	}
	for _, ag := range it.OpenAggregates {
		switch {
		case !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(ag.Name):
			add(f, it.Code, "", "open_aggregates: name %q must be lower case letters, digits and _", ag.Name)
		case len(ag.GroupBy) == 0:
			add(f, it.Code, "", "open_aggregates %s: group_by names no field", ag.Name)
		case ag.MinCount < 2:
			add(f, it.Code, "", "open_aggregates %s: min_count must be at least 2 (counts below it are suppressed)", ag.Name)
		}
		for _, g := range ag.GroupBy {
			var fd *Field
			for _, x := range it.Fields {
				if x.Name == g {
					fd = x
				}
			}
			if fd == nil {
				add(f, it.Code, "", "open_aggregates %s: no field %q", ag.Name, g)
			} else if fd.OpenRule() == OpenDrop {
				add(f, it.Code, "", "open_aggregates %s: field %q is dropped from open releases: counting by it would release it", ag.Name, g)
			}
		}
	}
	if !frequencies[it.UpdateFrequency] {
		add(f, it.Code, "", "update_frequency must be realtime, daily, weekly, monthly, quarterly or yearly, not %q", it.UpdateFrequency)
	}
	if tc := c.TopicConfig(it); tc.Partitions <= 0 || tc.ReplicationFactor < 0 || !policies[tc.CleanupPolicy] {
		add(f, it.Code, "", "topic: partitions must be positive (here or in topic_defaults), replication_factor not negative, cleanup_policy delete, compact or \"compact,delete\"")
	}
	it.fieldIdx = make(map[string]int, len(it.Fields))
	for i, fd := range it.Fields {
		if !fieldNameRe.MatchString(fd.Name) {
			add(f, it.Code, fd.Name, "field name must be lower case (a-z, 0-9, _) and start with a letter")
		}
		if _, dup := it.fieldIdx[fd.Name]; dup {
			add(f, it.Code, fd.Name, "duplicate field")
		}
		it.fieldIdx[fd.Name] = i
		validateField(fd, func(format string, args ...any) { add(f, it.Code, fd.Name, format, args...) })
	}
	switch kf := it.Field(it.Key); {
	case it.Key == "":
		add(f, it.Code, "", "no business key: set \"key\" to a field name")
	case kf == nil:
		add(f, it.Code, it.Key, "business key field does not exist")
	case !kf.Required || kf.Type != TypeString:
		add(f, it.Code, it.Key, "business key field must be a required string")
	}
	for _, name := range it.Lookup {
		switch lf := it.Field(name); {
		case lf == nil:
			add(f, it.Code, name, "lookup field does not exist")
		case name == it.Key:
			add(f, it.Code, name, "the business key is always a lookup: do not list it in \"lookup\"")
		case lf.Type != TypeString:
			add(f, it.Code, name, "a lookup field must be a string (an identifier)")
		}
	}
}

var busNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// checkUpstream checks a received item (docs/federation.md): its source
// stands for the bus it names, and it carries the provenance field; a
// bus's department publishes received items only, and no other item may
// use the provenance field's name.
func (c *Catalog) checkUpstream(it *Item, src *Department, add adder) {
	f := it.file
	up := it.Upstream
	if up == nil {
		if src != nil && src.Bus != "" {
			add(f, it.Code, "", "source %s stands for the bus %q: its items are received from it, and need \"upstream\" (bus and item)", src.Code, src.Bus)
		}
		for _, fd := range it.Fields {
			if fd.Name == UpstreamField {
				add(f, it.Code, fd.Name, "the field name %q is kept for items received from another bus (\"upstream\")", UpstreamField)
			}
		}
		return
	}
	switch {
	case up.Bus == "" || !itemCodeRe.MatchString(up.Item):
		add(f, it.Code, "", "upstream needs the bus and the item's code there (domain.name)")
	case up.Bus == c.BusName():
		add(f, it.Code, "", "upstream bus %q is this bus", up.Bus)
	case src != nil && src.Bus != up.Bus:
		add(f, it.Code, "", "upstream bus %q: the source %s must stand for it (its \"bus\" is %q)", up.Bus, src.Code, src.Bus)
	}
	var pf *Field
	for _, fd := range it.Fields {
		if fd.Name == UpstreamField {
			pf = fd
		}
	}
	if pf == nil || pf.Type != TypeString || !pf.Required || it.Key == UpstreamField {
		add(f, it.Code, UpstreamField, "a received item needs the field %q, a required string (the records' upstream provenance), besides its key", UpstreamField)
	}
}

// indexThemes indexes the theme databases and checks them.
func (c *Catalog) indexThemes(add adder) {
	c.themeByCode = make(map[string]*Theme)
	for _, th := range c.Themes {
		f := th.file
		if !regexp.MustCompile(`^theme_[a-z0-9_]+$`).MatchString(th.Code) {
			add(f, "", "", "theme code %q must look like theme_<name> (a-z, 0-9, _)", th.Code)
		}
		if _, dup := c.themeByCode[th.Code]; dup {
			add(f, "", "", "duplicate theme code %q", th.Code)
		}
		c.themeByCode[th.Code] = th
		if len(th.Items) == 0 {
			add(f, "", "", "theme %s uses no item", th.Code)
		}
		for _, code := range th.Items {
			it := c.itemByCode[code]
			if it == nil {
				add(f, code, "", "theme %s uses an unknown item", th.Code)
				continue
			}
			it.themes = append(it.themes, th.Code)
		}
		for _, v := range th.Views {
			if !fieldNameRe.MatchString(v.Name) || strings.TrimSpace(v.SQL) == "" {
				add(f, "", "", "theme %s: view %q needs a lower-case name and its SQL", th.Code, v.Name)
			}
		}
	}
}

func validateField(fd *Field, bad func(string, ...any)) {
	switch fd.Type {
	case TypeString, TypeLong, TypeDouble, TypeBoolean, TypeDate, TypeTimestamp:
	case TypeDecimal:
		if fd.Precision < 1 || fd.Precision > 38 || fd.Scale < 0 || fd.Scale > fd.Precision {
			bad("decimal needs 1 <= precision <= 38 and 0 <= scale <= precision")
		}
	case TypeEnum:
		if len(fd.Symbols) == 0 {
			bad("enum needs symbols")
		}
		for _, s := range fd.Symbols {
			if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(s) {
				bad("enum symbol %q is not a valid Avro name", s)
			}
		}
	default:
		bad("unknown type %q", fd.Type)
	}
	if (fd.Min != nil || fd.Max != nil) && fd.Type != TypeLong && fd.Type != TypeDouble && fd.Type != TypeDecimal {
		bad("min and max need a long, double or decimal field")
	}
	if fd.Min != nil && fd.Max != nil && *fd.Min > *fd.Max {
		bad("min is above max")
	}
	if fd.Grade < 1 || fd.Grade > 4 {
		bad("grade must be 1 to 4")
	}
	switch fd.Open {
	case "", OpenDrop, OpenMask:
	case OpenClear:
		if fd.Grade > OpenGrade {
			bad("open %q would release a grade-%d field in clear: only grades 1 to %d may be (drop, mask, year or region it)", fd.Open, fd.Grade, OpenGrade)
		}
	case OpenYear:
		if fd.Type != TypeDate && fd.Type != TypeTimestamp {
			bad("open %q needs a date or timestamp field", fd.Open)
		}
	case OpenRegion:
		if fd.Type != TypeString || !fd.HasRule("division") {
			bad("open %q needs a division code field (rule division)", fd.Open)
		}
	default:
		bad("unknown open rule %q (clear, drop, mask, year, region)", fd.Open)
	}
	for _, r := range fd.Rules {
		rule, ok := field.Lookup(r)
		switch {
		case !ok:
			bad("unknown rule %q (known: %s)", r, strings.Join(field.Names(), ", "))
		case rule.Kind == field.Text && fd.Type != TypeString:
			bad("rule %q needs a string field", r)
		case rule.Kind == field.Time && fd.Type != TypeDate && fd.Type != TypeTimestamp:
			bad("rule %q needs a date or timestamp field", r)
		}
	}
}
