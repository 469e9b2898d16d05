package catalog

import "encoding/json"

// WithItem is the catalog with it added, or in place of the item of its
// code, validated as Load validates (the whole catalog: a change may break
// a theme's view or a shared list). The receiver is not changed.
func (c *Catalog) WithItem(it *Item) (*Catalog, error) { return c.WithItems(it) }

// WithItems is WithItem for several items, validated once.
func (c *Catalog) WithItems(items ...*Item) (*Catalog, error) {
	by := make(map[string]*Item, len(items))
	for _, it := range items {
		by[it.Code] = it
	}
	n := *c
	n.Items = make([]*Item, 0, len(c.Items)+len(items))
	for _, old := range c.Items {
		cp := *old
		if it, ok := by[old.Code]; ok {
			cp = *it
			cp.file = old.file
			delete(by, old.Code)
		}
		n.Items = append(n.Items, &cp)
	}
	for _, it := range items { // new ones, in the order given
		if _, ok := by[it.Code]; ok {
			cp := *it
			cp.file = "items/" + it.Code + ".json"
			n.Items = append(n.Items, &cp)
			delete(by, it.Code)
		}
	}
	n.Themes = make([]*Theme, len(c.Themes))
	for i, th := range c.Themes {
		cp := *th
		n.Themes[i] = &cp
	}
	if err := n.index(); err != nil {
		return nil, err
	}
	return &n, nil
}

// ParseItem reads an item file's JSON (as items/<code>.json holds it).
func ParseItem(b []byte) (*Item, error) {
	var it Item
	if err := json.Unmarshal(b, &it); err != nil {
		return nil, err
	}
	return &it, nil
}
