// Package upstream is the provenance a record received from another bus
// carries (docs/federation.md): the bus it was published on, its source
// department there, the item, and its position (topic, partition, offset)
// on that bus, as one string in the received item's field "upstream"
// (catalog.UpstreamField). The bridge writes it, the door checks it, the
// sinks keep it with the record, the lookups show it. A leaf.
package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Scheme begins every provenance string.
const Scheme = "jutong"

// Provenance is where a received record was published.
type Provenance struct {
	Bus        string // the upstream bus (its catalog's "bus")
	Department string // the record's source department on that bus
	Item       string // the item's code on that bus
	Topic      string // the topic the bridge read it from (the grant's feed, or the item's topic)
	Partition  int32
	Offset     int64
}

// String renders p as jutong://<bus>/<department>/<item>?topic=..&partition=..&offset=..
// (the query's keys in order, as url.Values.Encode writes them).
func (p Provenance) String() string {
	b := make([]byte, 0, len(Scheme)+len(p.Bus)+len(p.Department)+len(p.Item)+len(p.Topic)+56)
	b = append(b, Scheme+"://"...)
	b = append(b, p.Bus...)
	b = append(b, '/')
	b = append(b, p.Department...)
	b = append(b, '/')
	b = append(b, p.Item...)
	b = append(b, "?offset="...)
	b = strconv.AppendInt(b, p.Offset, 10)
	b = append(b, "&partition="...)
	b = strconv.AppendInt(b, int64(p.Partition), 10)
	b = append(b, "&topic="...)
	b = append(b, url.QueryEscape(p.Topic)...)
	return string(b)
}

var (
	nameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	itemRe = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`)
)

// Parse reads a provenance string, refusing one that is not exactly of
// String's form: the error says which part is wrong.
func Parse(s string) (Provenance, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Provenance{}, fmt.Errorf("not a provenance URL: %w", err)
	}
	if u.Scheme != Scheme || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return Provenance{}, fmt.Errorf("want %s://<bus>/<department>/<item>?topic=&partition=&offset=", Scheme)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 {
		return Provenance{}, errors.New("the path must be /<department>/<item>")
	}
	p := Provenance{Bus: u.Host, Department: parts[0], Item: parts[1]}
	switch {
	case !nameRe.MatchString(p.Bus):
		return Provenance{}, fmt.Errorf("bus %q is not a bus name", p.Bus)
	case !nameRe.MatchString(p.Department):
		return Provenance{}, fmt.Errorf("department %q is not a department code", p.Department)
	case !itemRe.MatchString(p.Item):
		return Provenance{}, fmt.Errorf("item %q is not an item code", p.Item)
	}
	q := u.Query()
	if len(q) != 3 || len(q["topic"]) != 1 || len(q["partition"]) != 1 || len(q["offset"]) != 1 {
		return Provenance{}, errors.New("the query must be exactly topic, partition and offset")
	}
	p.Topic = q.Get("topic")
	if p.Topic == "" || len(p.Topic) > 249 {
		return Provenance{}, errors.New("topic is empty or too long")
	}
	part, err := strconv.ParseInt(q.Get("partition"), 10, 32)
	if err != nil || part < 0 {
		return Provenance{}, fmt.Errorf("partition %q is not a partition number", q.Get("partition"))
	}
	off, err := strconv.ParseInt(q.Get("offset"), 10, 64)
	if err != nil || off < 0 {
		return Provenance{}, fmt.Errorf("offset %q is not an offset", q.Get("offset"))
	}
	p.Partition, p.Offset = int32(part), off
	if p.String() != s {
		return Provenance{}, errors.New("not in canonical form (as the bridge writes it)")
	}
	return p, nil
}
