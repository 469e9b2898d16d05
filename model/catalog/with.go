package catalog

import "encoding/json"

// WithItem is the catalog with it added, or in place of the item of its
// code, validated as Load validates (the whole catalog: a change may break
// a theme's view or a shared list). The receiver is not changed.
func (c *Catalog) WithItem(it *Item) (*Catalog, error) {
	n := *c
	n.Items = make([]*Item, 0, len(c.Items)+1)
	replaced := false
	for _, old := range c.Items {
		cp := *old
		if old.Code == it.Code {
			cp = *it
			cp.file = old.file
			replaced = true
		}
		n.Items = append(n.Items, &cp)
	}
	if !replaced {
		cp := *it
		cp.file = "items/" + it.Code + ".json"
		n.Items = append(n.Items, &cp)
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
