// Package catalog is the data catalog that drives the bus: departments, the
// four base databases, theme databases and the catalog items (数据资源目录)
// with their fields, business key, source department, share type and the
// databases they land in.
//
// The sample catalog lives as JSON files under data/ (embedded in the
// binary); Load reads the same layout from any directory, so a city keeps its
// own catalog in its own repository. Every other package takes what it needs
// from a *Catalog: topics, Avro schemas, validation rules, sink tables.
package catalog
