package open

import (
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"sort"

	"github.com/jutong/jutong/model/catalog"
)

//go:embed web
var web embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"freq":     func(f string) string { return frequencyZH[f] },
	"opentype": func(t string) string { return openZH[catalog.ShareType(t)] },
	"rule": func(r string) string {
		return map[string]string{catalog.OpenClear: "原样开放", catalog.OpenMask: "掩码", catalog.OpenYear: "仅保留年份", catalog.OpenRegion: "泛化至市级区划"}[r]
	},
	"size": func(n int64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%d B", n)
	},
}).ParseFS(web, "web/*.html"))

// Handler serves the open system: the portal (/, /dataset/{item}), the
// CKAN-shaped API (/api/3/action/...), DCAT (/catalog.jsonld) and the
// downloads (/open/download/...), none of it behind a login, all of it
// read-only, every page with a strict Content-Security-Policy.
func (s *Server) Handler() http.Handler {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.searchPage)
	mux.HandleFunc("GET /dataset/{item}", s.datasetPage)
	mux.HandleFunc("GET /static/portal.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.ServeFileFS(w, r, web, "web/portal.css")
	})
	mux.HandleFunc("GET /api/3/action/{name}", s.action)
	mux.HandleFunc("GET /catalog.jsonld", s.dcat)
	mux.HandleFunc("GET /open/download/{item}/{file}", s.counting(s.download))
	mux.HandleFunc("GET /open/v1/datasets/{item}/records", s.records)
	if s.Applicants != nil {
		mux.HandleFunc("POST /open/v1/applicants", s.register)
		mux.HandleFunc("GET /open/v1/applicants", s.listApplicants)
		mux.HandleFunc("POST /open/v1/applicants/{id}/{action}", s.decide)
	}
	return secure(mux)
}

// SecurityHeaders are the headers every page of the bus carries (the open
// system's and the portal's): no script, no frame, no sniffing, no
// referrer, only this origin's styles and forms.
func SecurityHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
}

// Stylesheet is the pages' stylesheet (the portal's extends it).
func Stylesheet() []byte {
	b, _ := web.ReadFile("web/portal.css")
	return b
}

// secure sets SecurityHeaders on every answer. The routes name their
// methods: anything else (a POST to a page) is the mux's 405.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SecurityHeaders(w.Header())
		h.ServeHTTP(w, r)
	})
}

func (s *Server) counting(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w}
		next(rec, r)
		if rec.status == http.StatusOK || rec.status == 0 {
			s.countMu.Lock()
			if s.counts == nil {
				s.counts = map[string]int{}
			}
			s.counts[r.PathValue("item")]++
			s.countMu.Unlock()
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

type orgCount struct {
	Name, Title string
	Count       int
}

func (s *Server) searchPage(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	q := qs.Get("q")
	filters := map[string]string{"organization": qs.Get("organization"), "tags": qs.Get("tags"), "groups": qs.Get("groups")}
	hits, _ := s.Search(s.base(r), q, filters)
	_, facets := s.Search(s.base(r), q, nil)
	list := func(facet string, title func(string) string) []orgCount {
		var out []orgCount
		for name, n := range facets[facet] {
			out = append(out, orgCount{name, title(name), n})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	orgs := list("organization", func(name string) string {
		if d := s.Catalog.Department(name); d != nil {
			return d.Name
		}
		return name
	})
	themes := list("groups", func(name string) string {
		if th := s.Catalog.Theme(name); th != nil {
			return th.Name
		}
		return name
	})
	tags := list("tags", func(name string) string { return name })
	s.render(w, "search.html", map[string]any{"Title": "开放数据目录", "Q": q, "Org": filters["organization"], "Tag": filters["tags"], "Group": filters["groups"],
		"Hits": hits, "Orgs": orgs, "Themes": themes, "Tags": tags})
}

func (s *Server) datasetPage(w http.ResponseWriter, r *http.Request) {
	it := s.Catalog.Item(r.PathValue("item"))
	if it == nil || !Listed(it) {
		w.WriteHeader(http.StatusNotFound)
		s.render(w, "search.html", map[string]any{"Title": "未找到数据集", "Q": r.PathValue("item")})
		return
	}
	ds := s.dataset(s.base(r), it)
	rows := 0
	if ds.release != nil {
		rows = ds.release.Rows
	}
	s.countMu.Lock()
	n := s.counts[it.Code]
	s.countMu.Unlock()
	s.render(w, "dataset.html", map[string]any{"Title": ds.Title, "D": ds, "Rows": rows, "Downloads": n, "Base": s.base(r)})
}

func (s *Server) render(w http.ResponseWriter, page string, data map[string]any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pages.ExecuteTemplate(w, page, data); err != nil {
		s.Log.Warn("open portal: render", "page", page, "err", err)
	}
}
