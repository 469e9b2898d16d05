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

// Handler serves the Confluent Schema Registry REST API subset backed by s,
// to the principals acc lets in.
func Handler(s *Store, acc Access, log *slog.Logger) http.Handler {
	h := &handler{s: s, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /subjects", h.subjects)
	mux.HandleFunc("GET /subjects/{subject}/versions", h.versions)
	mux.HandleFunc("POST /subjects/{subject}/versions", h.register)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}", h.version)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", h.versionSchema)
	mux.HandleFunc("DELETE /subjects/{subject}/versions/{version}", h.deleteVersion)
	mux.HandleFunc("POST /subjects/{subject}", h.lookup)
	mux.HandleFunc("DELETE /subjects/{subject}", h.deleteSubject)
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions/{version}", h.compatVersion)
	mux.HandleFunc("POST /compatibility/subjects/{subject}/versions", h.compatAll)
	mux.HandleFunc("GET /config", h.getConfig)
	mux.HandleFunc("PUT /config", h.putConfig)
	mux.HandleFunc("GET /config/{subject}", h.getConfig)
	mux.HandleFunc("PUT /config/{subject}", h.putConfig)
	mux.HandleFunc("DELETE /config/{subject}", h.deleteConfig)
	mux.HandleFunc("GET /schemas/ids/{id}", h.schemaByID)
	mux.HandleFunc("GET /schemas/ids/{id}/schema", h.schemaTextByID)
	mux.HandleFunc("GET /schemas/ids/{id}/versions", h.usages)
	mux.HandleFunc("GET /schemas/types", func(w http.ResponseWriter, r *http.Request) { h.reply(w, []string{"AVRO"}) })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { h.reply(w, map[string]any{}) })
	return acc.guard(mux, log)
}

type handler struct {
	s   *Store
	log *slog.Logger
}

const contentType = "application/vnd.schemaregistry.v1+json"

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

type schemaBody struct {
	Schema     string `json:"schema"`
	SchemaType string `json:"schemaType,omitempty"`
}

func (h *handler) body(w http.ResponseWriter, r *http.Request) (string, bool) {
	var b schemaBody
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&b); err != nil {
		h.fail(w, &Error{422, 42201, "Invalid schema: request body: " + err.Error()})
		return "", false
	}
	if b.SchemaType != "" && b.SchemaType != "AVRO" {
		h.fail(w, &Error{422, 42201, "Invalid schema: only AVRO is supported, not " + b.SchemaType})
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

func (h *handler) subjects(w http.ResponseWriter, r *http.Request) { h.reply(w, h.s.Subjects()) }

func (h *handler) versions(w http.ResponseWriter, r *http.Request) {
	vs, err := h.s.Versions(r.PathValue("subject"))
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, vs)
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

func (h *handler) version(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	v, err := h.s.Get(r.PathValue("subject"), n)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, v)
}

func (h *handler) versionSchema(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	v, err := h.s.Get(r.PathValue("subject"), n)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write([]byte(v.Schema))
}

func (h *handler) deleteVersion(w http.ResponseWriter, r *http.Request) {
	n, err := versionParam(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
	defer cancel()
	deleted, err := h.s.DeleteVersion(ctx, r.PathValue("subject"), n, r.URL.Query().Get("permanent") == "true")
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
	v, err := h.s.Lookup(r.PathValue("subject"), schema)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, v)
}

func (h *handler) schemaByID(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		h.fail(w, errSchemaNotFound)
		return
	}
	text, err := h.s.SchemaByID(id)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, schemaBody{Schema: text})
}

func (h *handler) schemaTextByID(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		h.fail(w, errSchemaNotFound)
		return
	}
	text, err := h.s.SchemaByID(id)
	if err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write([]byte(text))
}

func (h *handler) usages(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		h.fail(w, errSchemaNotFound)
		return
	}
	if _, err := h.s.SchemaByID(id); err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, h.s.Usages(id))
}

func (h *handler) deleteSubject(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), waitTimeout)
	defer cancel()
	versions, err := h.s.DeleteSubject(ctx, r.PathValue("subject"), r.URL.Query().Get("permanent") == "true")
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, versions)
}

type compatResult struct {
	IsCompatible bool     `json:"is_compatible"`
	Messages     []string `json:"messages"`
}

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
	if err != nil {
		h.fail(w, err)
		return
	}
	h.reply(w, compatResult{IsCompatible: len(msgs) == 0, Messages: nonNil(msgs)})
}

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
	subject := r.PathValue("subject")
	if _, err := h.s.Versions(subject); err != nil {
		h.fail(w, err)
		return
	}
	msgs := h.s.check(subject, parsed)
	h.reply(w, compatResult{IsCompatible: len(msgs) == 0, Messages: nonNil(msgs)})
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
	if r.URL.Query().Get("defaultToGlobal") == "true" {
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
		h.fail(w, errInvalidLevel(err.Error()))
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
