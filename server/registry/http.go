package registry

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/jutong/jutong/schemas"
)

// Handler serves the Confluent Schema Registry REST API (v1, the default
// context) backed by s, to the principals acc lets in. Every endpoint
// answers with Confluent's shapes and error codes; an unknown path is a
// JSON 404 (error_code 404) and a known path with another method a JSON 405,
// as Confluent's registry answers them. See docs/registry.md for the
// endpoints and what is not served.
func Handler(s *Store, acc Access, log *slog.Logger) http.Handler {
	h := &handler{s: s, log: log}
	mux := http.NewServeMux()
	// Schemas.
	mux.HandleFunc("GET /schemas", h.allSchemas)
	mux.HandleFunc("GET /schemas/ids/{id}", h.schemaByID)
	mux.HandleFunc("GET /schemas/ids/{id}/schema", h.schemaTextByID)
	mux.HandleFunc("GET /schemas/ids/{id}/subjects", h.subjectsOfID)
	mux.HandleFunc("GET /schemas/ids/{id}/versions", h.usages)
	mux.HandleFunc("GET /schemas/types", func(w http.ResponseWriter, r *http.Request) { h.reply(w, []string{"AVRO"}) })
	// Subjects and their versions.
	mux.HandleFunc("GET /subjects", h.subjects)
	mux.HandleFunc("POST /subjects/{subject}", h.lookup)
	mux.HandleFunc("DELETE /subjects/{subject}", h.deleteSubject)
	mux.HandleFunc("GET /subjects/{subject}/versions", h.versions)
	mux.HandleFunc("POST /subjects/{subject}/versions", h.register)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}", h.version)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", h.versionSchema)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/referencedby", h.referencedBy)
	mux.HandleFunc("DELETE /subjects/{subject}/versions/{version}", h.deleteVersion)
	// Compatibility.
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions/{version}", h.compatVersion)
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions", h.compatAll)
	// Config (compatibility levels).
	mux.HandleFunc("GET /config", h.getConfig)
	mux.HandleFunc("PUT /config", h.putConfig)
	mux.HandleFunc("DELETE /config", h.deleteConfig)
	mux.HandleFunc("GET /config/{subject}", h.getConfig)
	mux.HandleFunc("PUT /config/{subject}", h.putConfig)
	mux.HandleFunc("DELETE /config/{subject}", h.deleteConfig)
	// Mode: always READWRITE (the bus's admin is the one writer).
	mux.HandleFunc("GET /mode", h.getMode)
	mux.HandleFunc("GET /mode/{subject}", h.getMode)
	for _, p := range []string{"PUT /mode", "PUT /mode/{subject}", "DELETE /mode/{subject}"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			h.fail(w, &Error{422, 42205, "Operation not permitted: this registry's mode is READWRITE and cannot be changed"})
		})
	}
	// Contexts and the server's metadata.
	mux.HandleFunc("GET /contexts", func(w http.ResponseWriter, r *http.Request) { h.reply(w, []string{"."}) })
	mux.HandleFunc("GET /v1/metadata/id", func(w http.ResponseWriter, r *http.Request) {
		h.reply(w, map[string]any{"scope": map[string]any{"path": []string{}, "clusters": map[string]string{"schema-registry-cluster": "jutong"}}})
	})
	mux.HandleFunc("GET /v1/metadata/version", func(w http.ResponseWriter, r *http.Request) {
		h.reply(w, map[string]string{"version": "jutong", "commitId": ""})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { h.reply(w, map[string]any{}) })
	mux.HandleFunc("/", h.notFound(mux))
	return acc.guard(mux, log)
}

type handler struct {
	s   *Store
	log *slog.Logger
}

const contentType = "application/vnd.schemaregistry.v1+json"

// notFound answers what no pattern serves: 405 with Allow when the path is
// served under another method, else 404, both in Confluent's JSON shape.
func (h *handler) notFound(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			for _, m := range allow {
				w.Header().Add("Allow", m)
			}
			h.fail(w, &Error{405, 405, "HTTP 405 Method Not Allowed"})
			return
		}
		h.fail(w, &Error{404, 404, "HTTP 404 Not Found"})
	}
}

func (h *handler) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", contentType)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *handler) fail(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		h.log.Error("registry request failed", "err", err)
		e = &Error{500, 50001, "Error in the backend data store: " + err.Error()}
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(e.HTTP)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": e.Code, "message": e.Message})
}

// schemaBody is a request's schema, and a response's SchemaString: Confluent
// leaves schemaType out for Avro, and so does this registry, which serves
// Avro alone.
type schemaBody struct {
	Schema     string `json:"schema"`
	SchemaType string `json:"schemaType,omitempty"`
	// References would make the schema depend on others'; refused.
	References []json.RawMessage `json:"references,omitempty"`
}

func (h *handler) body(w http.ResponseWriter, r *http.Request) (string, bool) {
	var b schemaBody
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&b); err != nil {
		h.fail(w, &Error{400, 400, "Unrecognizable request body: " + err.Error()})
		return "", false
	}
	switch {
	case b.SchemaType != "" && b.SchemaType != "AVRO":
		h.fail(w, &Error{422, 42201, "Invalid schema: only AVRO is supported, not " + b.SchemaType})
		return "", false
	case len(b.References) > 0:
		h.fail(w, &Error{422, 42201, "Invalid schema: schema references are not supported"})
		return "", false
	case b.Schema == "":
		h.fail(w, &Error{422, 42201, "Invalid schema: empty schema"})
		return "", false
	}
	return b.Schema, true
}

func versionParam(r *http.Request) (int, error) {
	v := r.PathValue("version")
	if v == "latest" || v == "-1" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, &Error{422, 42202, "The specified version '" + v + "' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""}
	}
	return n, nil
}

// idParam reads a schema id; one that is no number is no schema's.
func idParam(r *http.Request) (int, error) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		return 0, &Error{404, 40403, "Schema " + r.PathValue("id") + " not found"}
	}
	return id, nil
}

// flag reads a boolean query parameter as Confluent's (JAX-RS) does: "true"
// in any case is true, anything else false.
func flag(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

func filterParams(r *http.Request) Filter {
	return Filter{Deleted: flag(r, "deleted"), DeletedOnly: flag(r, "deletedOnly")}
}

// page applies ?offset= and ?limit= (-1 or absent: no limit).
func page[T any](r *http.Request, all []T) []T {
	off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	lim := -1
	if v := r.URL.Query().Get("limit"); v != "" {
		lim, _ = strconv.Atoi(v)
	}
	if off < 0 {
		off = 0
	}
	if off >= len(all) {
		return []T{}
	}
	all = all[off:]
	if lim >= 0 && lim < len(all) {
		all = all[:lim]
	}
	return all
}

// versionReply is Confluent's Schema entity for a version (no schemaType
// for Avro, no deleted flag).
type versionReply struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
}

func reply(v *Version) versionReply {
	return versionReply{Subject: v.Subject, Version: v.Version, ID: v.ID, Schema: v.Schema}
}

func (h *handler) allSchemas(w http.ResponseWriter, r *http.Request) {
	vs := h.s.SchemasMatching(r.URL.Query().Get("subjectPrefix"), Filter{Deleted: flag(r, "deleted")}, flag(r, "latestOnly"))
	out := make([]versionReply, len(vs))
	for i := range vs {
		out[i] = reply(&vs[i])
	}
	h.reply(w, page(r, out))
}

func (h *handler) subjects(w http.ResponseWriter, r *http.Request) {
	h.reply(w, page(r, h.s.SubjectsMatching(r.URL.Query().Get("subjectPrefix"), filterParams(r))))
}

func (h *handler) versions(w http.ResponseWriter, r *http.Request) {
	vs, err := h.s.VersionsMatching(r.PathValue("subject"), filterParams(r))
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, page(r, vs))
}

func (h *handler) register(w http.ResponseWriter, r *http.Request) {
	schema, ok := h.body(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
	defer cancel()
	v, err := h.s.Register(ctx, r.PathValue("subject"), schema)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, map[string]int{"id": v.ID})
}

// versionOf reads the version a request names, soft-deleted ones too with
// ?deleted=true.
func (h *handler) versionOf(r *http.Request) (*Version, error) {
	n, err := versionParam(r)
	if err != nil {
		return nil, err
	}
	return h.s.GetMatching(r.PathValue("subject"), n, flag(r, "deleted"))
}

func (h *handler) version(w http.ResponseWriter, r *http.Request) {
	v, err := h.versionOf(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, reply(v))
}

func (h *handler) versionSchema(w http.ResponseWriter, r *http.Request) {
	v, err := h.versionOf(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write([]byte(v.Schema))
}

// referencedBy: no schema here references another.
func (h *handler) referencedBy(w http.ResponseWriter, r *http.Request) {
	if _, err := h.versionOf(r); err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, []int{})
}

func (h *handler) deleteVersion(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
	defer cancel()
	deleted, err := h.s.DeleteVersion(ctx, r.PathValue("subject"), n, flag(r, "permanent"))
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, deleted)
}

func (h *handler) lookup(w http.ResponseWriter, r *http.Request) {
	schema, ok := h.body(w, r)
	if !ok {
		return
	}
	v, err := h.s.LookupMatching(r.PathValue("subject"), schema, flag(r, "deleted"))
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, reply(v))
}

// schemaByID answers Confluent's SchemaString. ?subject= only picks a
// context in Confluent's registry; here there is one, so it changes nothing.
func (h *handler) schemaByID(w http.ResponseWriter, r *http.Request) {
	text, err := h.schemaText(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, schemaBody{Schema: text})
}

func (h *handler) schemaTextByID(w http.ResponseWriter, r *http.Request) {
	text, err := h.schemaText(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write([]byte(text))
}

func (h *handler) schemaText(r *http.Request) (string, error) {
	id, err := idParam(r)
	if err != nil {
		return "", err
	}
	text, err := h.s.SchemaByID(id)
	if err != nil {
		return "", &Error{404, 40403, "Schema " + strconv.Itoa(id) + " not found"}
	}
	return text, nil
}

func (h *handler) subjectsOfID(w http.ResponseWriter, r *http.Request) {
	us, err := h.usagesOf(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	out := []string{}
	for _, u := range us {
		if len(out) == 0 || out[len(out)-1] != u.Subject {
			out = append(out, u.Subject)
		}
	}
	h.reply(w, page(r, out))
}

// usages answers Confluent's SubjectVersion pairs: subject and version only.
func (h *handler) usages(w http.ResponseWriter, r *http.Request) {
	us, err := h.usagesOf(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	type subjectVersion struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	out := make([]subjectVersion, len(us))
	for i, u := range us {
		out[i] = subjectVersion{u.Subject, u.Version}
	}
	h.reply(w, page(r, out))
}

func (h *handler) usagesOf(r *http.Request) ([]Version, error) {
	id, err := idParam(r)
	if err != nil {
		return nil, err
	}
	if _, err := h.s.SchemaByID(id); err != nil {
		return nil, &Error{404, 40403, "Schema " + strconv.Itoa(id) + " not found"}
	}
	return h.s.UsagesMatching(id, r.URL.Query().Get("subject"), flag(r, "deleted")), nil
}

func (h *handler) deleteSubject(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
	defer cancel()
	versions, err := h.s.DeleteSubject(ctx, r.PathValue("subject"), flag(r, "permanent"))
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, versions)
}

// compatResult is Confluent's CompatibilityCheckResponse: the messages only
// when asked for (?verbose=true), then always (an empty list when
// compatible).
type compatResult struct {
	IsCompatible bool      `json:"is_compatible"`
	Messages     *[]string `json:"messages,omitempty"`
}

func (h *handler) compatReply(w http.ResponseWriter, r *http.Request, msgs []string) {
	res := compatResult{IsCompatible: len(msgs) == 0}
	if flag(r, "verbose") {
		m := nonNil(msgs)
		res.Messages = &m
	}
	h.reply(w, res)
}

// compatVersion checks against one version; against "latest" of a subject
// with no version, the schema is compatible (Confluent's answer).
func (h *handler) compatVersion(w http.ResponseWriter, r *http.Request) {
	schema, ok := h.body(w, r)
	if !ok {
		return
	}
	n, err := versionParam(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	msgs, err := h.s.CheckVersion(r.PathValue("subject"), n, schema)
	var e *Error
	if n == -1 && errors.As(err, &e) && e.Code == 40401 {
		msgs, err = nil, nil
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	h.compatReply(w, r, msgs)
}

// compatAll checks against the versions the level requires; a subject with
// none takes any schema.
func (h *handler) compatAll(w http.ResponseWriter, r *http.Request) {
	schema, ok := h.body(w, r)
	if !ok {
		return
	}
	parsed, err := schemas.ParseAvro(schema)
	if err != nil {
		h.fail(w, &Error{422, 42201, "Invalid schema: " + err.Error()})
		return
	}
	h.compatReply(w, r, h.s.check(r.PathValue("subject"), parsed))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// levelReply answers a config read. Confluent's registry answers with
// "compatibilityLevel"; hamba/avro's client reads "compatibility": both are sent.
func levelReply(l Level) map[string]Level {
	return map[string]Level{"compatibilityLevel": l, "compatibility": l}
}

func (h *handler) getConfig(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	if subject == "" {
		h.reply(w, levelReply(h.s.Level("")))
		return
	}
	if l, ok := h.s.SubjectLevel(subject); ok {
		h.reply(w, levelReply(l))
		return
	}
	if flag(r, "defaultToGlobal") {
		h.reply(w, levelReply(h.s.Level("")))
		return
	}
	h.fail(w, &Error{404, 40408, "Subject '" + subject + "' does not have subject-level compatibility configured"})
}

func (h *handler) putConfig(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Compatibility Level `json:"compatibility"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&body); err != nil {
		h.fail(w, &Error{400, 400, "Unrecognizable request body: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
	defer cancel()
	if err := h.s.SetLevel(ctx, r.PathValue("subject"), body.Compatibility); err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, map[string]Level{"compatibility": body.Compatibility})
}

// deleteConfig removes a subject's level (or the global one) and answers
// the one it removed.
func (h *handler) deleteConfig(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
	defer cancel()
	l, err := h.s.DeleteLevel(ctx, r.PathValue("subject"))
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, levelReply(l))
}

// getMode answers READWRITE; a subject has no mode of its own unless the
// global one is asked for (?defaultToGlobal=true), as in Confluent's.
func (h *handler) getMode(w http.ResponseWriter, r *http.Request) {
	if s := r.PathValue("subject"); s != "" && !flag(r, "defaultToGlobal") {
		h.fail(w, &Error{404, 40409, "Subject '" + s + "' does not have subject-level mode configured"})
		return
	}
	h.reply(w, map[string]string{"mode": "READWRITE"})
}
