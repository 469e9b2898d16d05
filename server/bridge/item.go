package bridge

import (
	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline/feed"
)

// ReceivedItem is the item a receiving bus declares for an item another
// bus grants it: the upstream item as the grant delivers it (the approved
// fields, those above the grant's grade masked as text: the grant's
// projection), sourced from the department source that stands for the
// upstream bus bus, with the provenance field (catalog.UpstreamField). Its
// JSON is the item's file in the receiving catalog (jutong bridge item
// prints it).
func ReceivedItem(up *catalog.Item, g feed.Grant, bus, source string) *catalog.Item {
	p := feed.Project(up, g)
	fields := make([]*catalog.Field, 0, len(p.Item.Fields)+1)
	for _, f := range p.Item.Fields {
		c := *f
		fields = append(fields, &c)
	}
	fields = append(fields, &catalog.Field{Name: catalog.UpstreamField, Title: "上游来源（总线、部门、位置）", Type: catalog.TypeString, Required: true, Grade: 1, Open: catalog.OpenDrop})
	it := p.Item.WithFields(fields)
	it.Source = source
	it.Upstream = &catalog.Upstream{Bus: bus, Item: up.Code}
	it.NameEN = up.NameEN + " (from " + bus + ")"
	var lookups []string
	for _, l := range up.Lookup {
		if p.Delivers(l) {
			lookups = append(lookups, l)
		}
	}
	it.Lookup = lookups
	it.OpenAggregates, it.OpenHistory = nil, false
	it.TopicSettings = catalog.TopicConfig{} // the receiving catalog's defaults
	it.Open, it.OpenLegalBasis = catalog.ShareNone, "received from "+bus+": its source there opens it (不予开放：上级数据由其来源开放)"
	if it.Share == catalog.ShareNone {
		it.Share = catalog.ShareConditional
	}
	return it
}
