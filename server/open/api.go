package open

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/server/audit"
)

// The audit kinds of the open system.
const (
	OpenDownload = audit.OpenDownload
	Released     = audit.OpenReleased
)

// Server serves the open system: the CKAN-shaped API, DCAT, the downloads
// and the portal.
type Server struct {
	Catalog  *catalog.Catalog
	Releases *Releaser
	// BaseURL is how the public reaches the bus (https://host:port), for
	// the URLs in the metadata; empty: as the request reached it.
	BaseURL string
	// Audit keeps a download; one that cannot be audited is not served.
	Audit func(ctx context.Context, e audit.Event) error
	// Applicants are the conditional-open applicants (nil: conditional
	// items' data is refused to all).
	Applicants *Applicants
	// AuthorityToken is the data authority's officer token, which decides
	// the applications.
	AuthorityToken string
	Log            *slog.Logger

	countMu sync.Mutex
	counts  map[string]int // downloads since the start, by item
	calls   map[string]int // metadata calls since the last FlushCalls, by action
	since   time.Time
}

// APICalls is the audit kind of the metadata calls (CKAN actions, DCAT),
// audited in aggregate: one event per action and minute, with the count.
const APICalls = audit.OpenAPICalls

func (s *Server) called(action string) {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	if s.calls == nil {
		s.calls, s.since = map[string]int{}, time.Now().UTC()
	}
	s.calls[action]++
}

// FlushCalls audits the metadata calls counted since the last flush (the
// bus calls it every minute); the data calls, downloads and record pages,
// are audited one by one.
func (s *Server) FlushCalls(ctx context.Context) error {
	s.countMu.Lock()
	calls, since := s.calls, s.since
	s.calls = nil
	s.countMu.Unlock()
	if len(calls) == 0 || s.Audit == nil {
		return nil
	}
	now := time.Now().UTC()
	var errs []error
	for action, n := range calls {
		errs = append(errs, s.Audit(ctx, audit.Event{Kind: APICalls, Department: "public", Actor: "public", Records: int64(n),
			Detail: action, WindowStart: since, WindowEnd: now}))
	}
	return errors.Join(errs...)
}

// Dataset is an item in the open catalog, in CKAN's package shape.
type Dataset struct {
	ID           string         `json:"id"`
	Name         string         `json:"name"`
	Title        string         `json:"title"`
	Notes        string         `json:"notes"`
	Organization Organization   `json:"organization"`
	Tags         []Tag          `json:"tags"`
	Groups       []Tag          `json:"groups"`
	Private      bool           `json:"private"`
	State        string         `json:"state"`
	LicenseID    string         `json:"license_id"`
	Modified     string         `json:"metadata_modified,omitempty"`
	Frequency    string         `json:"frequency"`
	OpenType     string         `json:"open_type"`
	Resources    []Resource     `json:"resources"`
	Extras       []Extra        `json:"extras"`
	Fields       []DatasetField `json:"fields"`
	item         *catalog.Item
	release      *Release
}

// Organization is a department, in CKAN's shape.
type Organization struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Title string `json:"title"`
}

// Tag is a tag or group, in CKAN's shape.
type Tag struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
}

// Resource is one download of the latest release.
type Resource struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Format       string `json:"format"`
	URL          string `json:"url"`
	Size         int64  `json:"size"`
	Hash         string `json:"hash"`
	LastModified string `json:"last_modified"`
	Rows         int    `json:"rows"`
}

// Extra is a key-value of CKAN's extras.
type Extra struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DatasetField is a released column and how it is de-identified.
type DatasetField struct {
	Name  string `json:"name"`
	Title string `json:"title"`
	Type  string `json:"type"`
	Rule  string `json:"deidentification"`
}

var frequencyZH = map[string]string{"realtime": "实时", "daily": "每日", "weekly": "每周", "monthly": "每月", "quarterly": "每季度", "yearly": "每年"}

var openZH = map[catalog.ShareType]string{catalog.ShareUnconditional: "无条件开放", catalog.ShareConditional: "有条件开放", catalog.ShareNone: "不予开放"}

// dataset renders an item as a dataset.
func (s *Server) dataset(base string, it *catalog.Item) *Dataset {
	d := s.Catalog.Department(it.Source)
	ds := &Dataset{ID: it.Code, Name: it.Code, Title: it.Name, Notes: fmt.Sprintf("%s（%s），%s维护，更新频率：%s，%s。", it.Name, it.NameEN, d.Name, frequencyZH[it.UpdateFrequency], openZH[it.Open]),
		Organization: Organization{ID: d.Code, Name: d.Code, Title: d.Name}, State: "active", LicenseID: "other-open",
		Frequency: it.UpdateFrequency, OpenType: string(it.Open), item: it}
	dom, _ := it.Namespace()
	ds.Tags = append(ds.Tags, Tag{Name: dom, DisplayName: dom})
	if it.Base != "" {
		ds.Tags = append(ds.Tags, Tag{Name: "base:" + it.Base, DisplayName: it.Base})
	}
	for _, th := range it.Themes() {
		ds.Groups = append(ds.Groups, Tag{Name: th, DisplayName: th})
	}
	for _, c := range Columns(it) {
		ds.Fields = append(ds.Fields, DatasetField{Name: c.f.Name, Title: c.f.Title, Type: string(c.f.Type), Rule: c.rule})
	}
	ds.Extras = []Extra{{"open_type", string(it.Open)}, {"update_frequency", it.UpdateFrequency}, {"source_department", it.Source}}
	if rel := s.Releases.Latest(it.Code); rel != nil && Open(it) {
		ds.release = rel
		ds.Modified = rel.Created.Format(time.RFC3339)
		for _, f := range Formats {
			file, ok := rel.Files[f]
			if !ok {
				continue
			}
			ds.Resources = append(ds.Resources, Resource{ID: it.Code + "/" + rel.ID + "." + f, Name: it.Name + " (" + strings.ToUpper(f) + ")",
				Format: strings.ToUpper(f), URL: base + "/open/download/" + it.Code + "/" + rel.ID + "." + f, Size: file.Size, Hash: "sha256:" + file.SHA256,
				LastModified: rel.Created.Format(time.RFC3339), Rows: rel.Rows})
		}
		if file, ok := rel.Files[ChangesFile]; ok {
			ds.Resources = append(ds.Resources, Resource{ID: it.Code + "/" + rel.ID + "." + ChangesFile, Name: it.Name + "（与上一版本相比的变更）",
				Format: "CSV", URL: base + "/open/download/" + it.Code + "/" + rel.ID + "." + ChangesFile, Size: file.Size, Hash: "sha256:" + file.SHA256,
				LastModified: rel.Created.Format(time.RFC3339)})
		}
		for _, ag := range it.OpenAggregates {
			f := ag.Name + ".csv"
			if file, ok := rel.Files[f]; ok {
				ds.Resources = append(ds.Resources, Resource{ID: it.Code + "/" + rel.ID + "." + f, Name: it.Name + "（统计：" + strings.Join(ag.GroupBy, "、") + "，小于 " + fmt.Sprint(ag.MinCount) + " 不公布）",
					Format: "CSV", URL: base + "/open/download/" + it.Code + "/" + rel.ID + "." + f, Size: file.Size, Hash: "sha256:" + file.SHA256,
					LastModified: rel.Created.Format(time.RFC3339)})
			}
		}
	}
	return ds
}

// base is how the request reached the bus, unless BaseURL says.
func (s *Server) base(r *http.Request) string {
	if s.BaseURL != "" {
		return s.BaseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// datasets are the listed items, in catalog order.
func (s *Server) datasets(base string) []*Dataset {
	var out []*Dataset
	for _, it := range s.Catalog.Items {
		if Listed(it) {
			out = append(out, s.dataset(base, it))
		}
	}
	return out
}

// Search finds the datasets matching q (in the name, the title, the notes,
// the fields' names and titles) and the filters (organization, tags,
// groups), with facet counts.
func (s *Server) Search(base, q string, filters map[string]string) (hits []*Dataset, facets map[string]map[string]int) {
	q = strings.ToLower(strings.TrimSpace(q))
	facets = map[string]map[string]int{"organization": {}, "tags": {}, "groups": {}, "res_format": {}}
	for _, ds := range s.datasets(base) {
		if q != "" && !ds.matches(q) {
			continue
		}
		if o := filters["organization"]; o != "" && ds.Organization.Name != o {
			continue
		}
		if t := filters["tags"]; t != "" && !slices.ContainsFunc(ds.Tags, func(x Tag) bool { return x.Name == t }) {
			continue
		}
		if g := filters["groups"]; g != "" && !slices.ContainsFunc(ds.Groups, func(x Tag) bool { return x.Name == g }) {
			continue
		}
		hits = append(hits, ds)
		facets["organization"][ds.Organization.Name]++
		for _, t := range ds.Tags {
			facets["tags"][t.Name]++
		}
		for _, g := range ds.Groups {
			facets["groups"][g.Name]++
		}
		for _, r := range ds.Resources {
			facets["res_format"][r.Format]++
		}
	}
	return hits, facets
}

func (ds *Dataset) matches(q string) bool {
	hay := []string{ds.Name, ds.Title, ds.Notes, ds.Organization.Title, ds.item.NameEN}
	for _, f := range ds.Fields {
		hay = append(hay, f.Name, f.Title)
	}
	for _, h := range hay {
		if strings.Contains(strings.ToLower(h), q) {
			return true
		}
	}
	return false
}

// ckan answers in the Action API's envelope.
func ckan(w http.ResponseWriter, r *http.Request, code int, result any, errMsg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Access-Control-Allow-Origin", "*") // public data, read-only: harvesters in browsers may read it
	w.WriteHeader(code)
	body := map[string]any{"help": "https://docs.ckan.org/en/latest/api/", "success": code == http.StatusOK}
	if code == http.StatusOK {
		body["result"] = result
	} else {
		body["error"] = map[string]string{"__type": http.StatusText(code), "message": errMsg}
	}
	_ = json.NewEncoder(w).Encode(body)
}

// action serves /api/3/action/{name}.
func (s *Server) action(w http.ResponseWriter, r *http.Request) {
	s.called(r.PathValue("name"))
	switch r.PathValue("name") {
	case "package_list":
		var names []string
		for _, ds := range s.datasets(s.base(r)) {
			names = append(names, ds.Name)
		}
		ckan(w, r, 200, names, "")
	case "package_show":
		it := s.Catalog.Item(r.URL.Query().Get("id"))
		if it == nil || !Listed(it) {
			ckan(w, r, 404, nil, "Not found: no open dataset "+strconv.Quote(r.URL.Query().Get("id")))
			return
		}
		ckan(w, r, 200, s.dataset(s.base(r), it), "")
	case "package_search":
		qs := r.URL.Query()
		filters := map[string]string{}
		for _, f := range strings.Fields(qs.Get("fq")) { // organization:x tags:y groups:z
			if k, v, ok := strings.Cut(f, ":"); ok {
				filters[k] = strings.Trim(v, `"`)
			}
		}
		hits, facets := s.Search(s.base(r), qs.Get("q"), filters)
		start, _ := strconv.Atoi(qs.Get("start"))
		rows := 10
		if v, err := strconv.Atoi(qs.Get("rows")); err == nil && v >= 0 {
			rows = min(v, 1000)
		}
		page := hits[min(max(start, 0), len(hits)):]
		page = page[:min(rows, len(page))]
		var want []string
		_ = json.Unmarshal([]byte(qs.Get("facet.field")), &want)
		sf := map[string]any{}
		for _, name := range want {
			var items []map[string]any
			keys := make([]string, 0, len(facets[name]))
			for k := range facets[name] {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				items = append(items, map[string]any{"name": k, "display_name": k, "count": facets[name][k]})
			}
			sf[name] = map[string]any{"title": name, "items": items}
		}
		out := map[string]any{"count": len(hits), "results": page, "sort": "score desc, metadata_modified desc", "search_facets": sf}
		ckan(w, r, 200, out, "")
	case "organization_list":
		seen := map[string]bool{}
		var orgs []string
		for _, ds := range s.datasets(s.base(r)) {
			if !seen[ds.Organization.Name] {
				seen[ds.Organization.Name] = true
				orgs = append(orgs, ds.Organization.Name)
			}
		}
		ckan(w, r, 200, orgs, "")
	default:
		ckan(w, r, 400, nil, "Bad request: unknown action "+strconv.Quote(r.PathValue("name"))+" (package_list, package_show, package_search, organization_list)")
	}
}

// dcat serves the catalog as DCAT-AP JSON-LD.
func (s *Server) dcat(w http.ResponseWriter, r *http.Request) {
	s.called("catalog.jsonld")
	base := s.base(r)
	var sets []map[string]any
	for _, ds := range s.datasets(base) {
		d := map[string]any{
			"@id": base + "/dataset/" + ds.Name, "@type": "dcat:Dataset",
			"dct:identifier": ds.Name, "dct:title": map[string]string{"@language": "zh", "@value": ds.Title},
			"dct:description":        map[string]string{"@language": "zh", "@value": ds.Notes},
			"dct:publisher":          map[string]any{"@type": "foaf:Organization", "foaf:name": ds.Organization.Title},
			"dct:accrualPeriodicity": ds.Frequency, "dcat:keyword": tagNames(ds.Tags),
			"dct:accessRights": ds.OpenType,
		}
		if ds.Modified != "" {
			d["dct:modified"] = ds.Modified
		}
		var dists []map[string]any
		for _, res := range ds.Resources {
			dists = append(dists, map[string]any{"@type": "dcat:Distribution", "dcat:downloadURL": res.URL, "dcat:accessURL": res.URL,
				"dct:format": res.Format, "dcat:byteSize": res.Size, "spdx:checksum": map[string]string{"spdx:algorithm": "sha256", "spdx:checksumValue": strings.TrimPrefix(res.Hash, "sha256:")},
				"dct:modified": res.LastModified})
		}
		d["dcat:distribution"] = dists
		sets = append(sets, d)
	}
	doc := map[string]any{
		"@context": map[string]string{"dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/", "foaf": "http://xmlns.com/foaf/0.1/", "spdx": "http://spdx.org/rdf/terms#"},
		"@id":      base + "/catalog.jsonld", "@type": "dcat:Catalog",
		"dct:title": map[string]string{"@language": "zh", "@value": "聚通开放数据目录"}, "dcat:dataset": sets,
	}
	w.Header().Set("Content-Type", "application/ld+json; charset=utf-8")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_ = json.NewEncoder(w).Encode(doc)
}

func tagNames(ts []Tag) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// download serves /open/download/{item}/{file}: <release>.<format>, or
// latest.<format> (a redirect to the newest release's stable URL).
func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	it := s.Catalog.Item(r.PathValue("item"))
	if it == nil || !Listed(it) {
		http.Error(w, "no open dataset "+r.PathValue("item"), http.StatusNotFound)
		return
	}
	who, allowed := s.access(w, r, it)
	if !allowed {
		return
	}
	id, format, ok := strings.Cut(r.PathValue("file"), ".")
	if !ok || !(slices.Contains(Formats, format) || strings.HasSuffix(format, ".csv")) {
		http.Error(w, "want <release>.csv, <release>.json or <release>.<aggregate>.csv", http.StatusNotFound)
		return
	}
	if id == "latest" {
		rel := s.Releases.Latest(it.Code)
		if rel == nil {
			http.Error(w, "no release of "+it.Code+" yet", http.StatusNotFound)
			return
		}
		http.Redirect(w, r, "/open/download/"+it.Code+"/"+rel.ID+"."+format, http.StatusFound)
		return
	}
	path, rel, ok := s.Releases.File(it.Code, id, format)
	if !ok {
		http.Error(w, "no release "+id+" of "+it.Code+" (only the newest are kept: see package_show)", http.StatusNotFound)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, "the release is gone", http.StatusNotFound)
		return
	}
	defer f.Close()
	if s.Audit != nil {
		if err := s.Audit(r.Context(), audit.Event{Kind: OpenDownload, Department: "public", Item: it.Code, Actor: who, Records: int64(rel.Rows),
			Detail: "release " + rel.ID + " " + format}); err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "the download could not be audited, so it is not served: retry", http.StatusServiceUnavailable)
			return
		}
	}
	ct := "text/csv; charset=utf-8"
	if format == "json" {
		ct = "application/json; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", it.Code+"-"+rel.ID+"."+format))
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable") // a release never changes
	w.Header().Set("ETag", `"`+rel.Files[format].SHA256+`"`)
	http.ServeContent(w, r, "", rel.Created, f)
}
