package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestConfluentShapes calls every endpoint the registry serves with raw
// HTTP, as a client in any language does, and checks each answer against
// the shape and error codes of Confluent's Schema Registry API reference
// (docs/registry.md lists them).
func TestConfluentShapes(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, url := openURL(t, c)
	ctx := context.Background()
	s := baseSchema(t).JSON
	v1, err := st.Register(ctx, subject, s)
	if err != nil {
		t.Fatal(err)
	}
	// The same schema under a second subject: the same id (as Confluent).
	other, err := st.Register(ctx, "other-value", s)
	if err != nil || other.ID != v1.ID {
		t.Fatalf("the same schema under another subject: %+v %v, want id %d", other, err, v1.ID)
	}
	if _, err := st.Register(ctx, "gone-value", `"string"`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteSubject(ctx, "gone-value", false); err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string) (int, http.Header, any) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, url+path, rd)
		req.SetBasicAuth(adminUser, adminPass)
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.schemaregistry.v1+json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		var v any
		if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&v); err != nil {
			// A schema's text is JSON too; anything else is not Confluent's.
			t.Errorf("%s %s: not JSON: %q", method, path, raw)
		}
		return resp.StatusCode, resp.Header, v
	}
	schemaJSON, _ := json.Marshal(map[string]string{"schema": s})
	id := float64(v1.ID)
	errBody := func(code int) map[string]any { return map[string]any{"error_code": float64(code)} }
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               any // a value, or an error body (compared on error_code alone)
	}{
		// Schemas.
		{"GET", "/schemas/ids/" + strconv.Itoa(v1.ID), "", 200, map[string]any{"schema": s}},
		{"GET", "/schemas/ids/" + strconv.Itoa(v1.ID) + "?subject=" + subject, "", 200, map[string]any{"schema": s}},
		{"GET", "/schemas/ids/999999", "", 404, errBody(40403)},
		{"GET", "/schemas/ids/abc", "", 404, errBody(40403)},
		{"GET", "/schemas/ids/" + strconv.Itoa(v1.ID) + "/versions", "", 200, []any{
			map[string]any{"subject": subject, "version": float64(1)},
			map[string]any{"subject": "other-value", "version": float64(1)}}},
		{"GET", "/schemas/ids/" + strconv.Itoa(v1.ID) + "/versions?subject=other-value", "", 200, []any{map[string]any{"subject": "other-value", "version": float64(1)}}},
		{"GET", "/schemas/ids/999999/versions", "", 404, errBody(40403)},
		{"GET", "/schemas/ids/" + strconv.Itoa(v1.ID) + "/subjects", "", 200, []any{subject, "other-value"}},
		{"GET", "/schemas/types", "", 200, []any{"AVRO"}},
		{"GET", "/schemas?subjectPrefix=other", "", 200, []any{map[string]any{"subject": "other-value", "version": float64(1), "id": id, "schema": s}}},
		// Subjects.
		{"GET", "/subjects", "", 200, []any{subject, "other-value"}},
		{"GET", "/subjects?subjectPrefix=oth", "", 200, []any{"other-value"}},
		{"GET", "/subjects?subjectPrefix=nothing", "", 200, []any{}},
		{"GET", "/subjects?deleted=true", "", 200, []any{"gone-value", subject, "other-value"}},
		{"GET", "/subjects?deletedOnly=true", "", 200, []any{"gone-value"}},
		{"GET", "/subjects?offset=1&limit=1", "", 200, []any{"other-value"}},
		{"GET", "/subjects/" + subject + "/versions", "", 200, []any{float64(1)}},
		{"GET", "/subjects/gone-value/versions", "", 404, errBody(40401)},
		{"GET", "/subjects/gone-value/versions?deleted=true", "", 200, []any{float64(1)}},
		{"GET", "/subjects/nope-value/versions", "", 404, errBody(40401)},
		{"GET", "/subjects/" + subject + "/versions/1", "", 200, map[string]any{"subject": subject, "version": float64(1), "id": id, "schema": s}},
		{"GET", "/subjects/" + subject + "/versions/latest", "", 200, map[string]any{"subject": subject, "version": float64(1), "id": id, "schema": s}},
		{"GET", "/subjects/" + subject + "/versions/-1", "", 200, map[string]any{"subject": subject, "version": float64(1), "id": id, "schema": s}},
		{"GET", "/subjects/" + subject + "/versions/7", "", 404, errBody(40402)},
		{"GET", "/subjects/" + subject + "/versions/zero", "", 422, errBody(42202)},
		{"GET", "/subjects/nope-value/versions/1", "", 404, errBody(40401)},
		{"GET", "/subjects/gone-value/versions/1?deleted=true", "", 200, nil},
		{"GET", "/subjects/" + subject + "/versions/1/referencedby", "", 200, []any{}},
		{"POST", "/subjects/" + subject, string(schemaJSON), 200, map[string]any{"subject": subject, "version": float64(1), "id": id, "schema": s}},
		{"POST", "/subjects/" + subject, `{"schema":"\"long\""}`, 404, errBody(40403)},
		{"POST", "/subjects/nope-value", string(schemaJSON), 404, errBody(40401)},
		{"POST", "/subjects/" + subject, `{"schema":`, 400, errBody(400)},
		{"POST", "/subjects/" + subject + "/versions", string(schemaJSON), 200, map[string]any{"id": id}},
		{"POST", "/subjects/" + subject + "/versions", `{"schema":"{not avro"}`, 422, errBody(42201)},
		{"POST", "/subjects/" + subject + "/versions", `{"schema":"\"string\"","schemaType":"PROTOBUF"}`, 422, errBody(42201)},
		{"POST", "/subjects/" + subject + "/versions", `{"schema":"\"string\"","references":[{"name":"x","subject":"y","version":1}]}`, 422, errBody(42201)},
		{"POST", "/subjects/" + subject + "/versions", `{"schema":"\"string\""}`, 409, errBody(409)},
		// Compatibility.
		{"POST", "/compatibility/subjects/" + subject + "/versions/latest", string(schemaJSON), 200, map[string]any{"is_compatible": true}},
		{"POST", "/compatibility/subjects/" + subject + "/versions/latest?verbose=true", string(schemaJSON), 200, map[string]any{"is_compatible": true, "messages": []any{}}},
		{"POST", "/compatibility/subjects/" + subject + "/versions", string(schemaJSON), 200, map[string]any{"is_compatible": true}},
		{"POST", "/compatibility/subjects/new-value/versions", string(schemaJSON), 200, map[string]any{"is_compatible": true}},
		{"POST", "/compatibility/subjects/new-value/versions/latest", string(schemaJSON), 200, map[string]any{"is_compatible": true}},
		{"POST", "/compatibility/subjects/" + subject + "/versions/9", string(schemaJSON), 404, errBody(40402)},
		{"POST", "/compatibility/subjects/" + subject + "/versions/latest", `{"schema":"\"string\""}`, 200, map[string]any{"is_compatible": false}},
		// Config and mode.
		{"GET", "/config", "", 200, map[string]any{"compatibilityLevel": "BACKWARD_TRANSITIVE", "compatibility": "BACKWARD_TRANSITIVE"}},
		{"GET", "/config/" + subject, "", 404, errBody(40408)},
		{"GET", "/config/" + subject + "?defaultToGlobal=true", "", 200, map[string]any{"compatibilityLevel": "BACKWARD_TRANSITIVE", "compatibility": "BACKWARD_TRANSITIVE"}},
		{"PUT", "/config/" + subject, `{"compatibility":"FULL"}`, 200, map[string]any{"compatibility": "FULL"}},
		{"PUT", "/config/" + subject, `{"compatibility":"SIDEWAYS"}`, 422, errBody(42203)},
		{"DELETE", "/config/" + subject, "", 200, map[string]any{"compatibilityLevel": "FULL", "compatibility": "FULL"}},
		{"DELETE", "/config/" + subject, "", 404, errBody(40401)},
		{"PUT", "/config", `{"compatibility":"FORWARD"}`, 200, map[string]any{"compatibility": "FORWARD"}},
		{"DELETE", "/config", "", 200, map[string]any{"compatibilityLevel": "FORWARD", "compatibility": "FORWARD"}},
		{"GET", "/config", "", 200, map[string]any{"compatibilityLevel": "BACKWARD_TRANSITIVE", "compatibility": "BACKWARD_TRANSITIVE"}},
		{"GET", "/mode", "", 200, map[string]any{"mode": "READWRITE"}},
		{"GET", "/mode/" + subject, "", 404, errBody(40409)},
		{"GET", "/mode/" + subject + "?defaultToGlobal=true", "", 200, map[string]any{"mode": "READWRITE"}},
		{"PUT", "/mode", `{"mode":"READONLY"}`, 422, errBody(42205)},
		{"GET", "/contexts", "", 200, []any{"."}},
		{"GET", "/", "", 200, map[string]any{}},
		// What is not served: JSON errors, as Confluent's.
		{"GET", "/nothing/here", "", 404, errBody(404)},
		{"GET", "/subjects/" + subject + "/versions/1/extra", "", 404, errBody(404)},
		{"PATCH", "/subjects", "", 405, errBody(405)},
		{"DELETE", "/schemas/types", "", 405, errBody(405)},
		// Deletes last.
		{"DELETE", "/subjects/other-value/versions/1?permanent=true", "", 404, errBody(40407)},
		{"DELETE", "/subjects/other-value/versions/1", "", 200, float64(1)},
		{"DELETE", "/subjects/other-value/versions/1?permanent=true", "", 200, float64(1)},
		{"DELETE", "/subjects/nope-value", "", 404, errBody(40401)},
	} {
		status, hdr, got := call(tc.method, tc.path, tc.body)
		if status != tc.status {
			t.Errorf("%s %s: %d %v, want %d", tc.method, tc.path, status, got, tc.status)
			continue
		}
		if status == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
		switch want := tc.want.(type) {
		case nil:
		case map[string]any:
			if code, isErr := want["error_code"]; isErr {
				m, _ := got.(map[string]any)
				if m == nil || m["error_code"] != code || m["message"] == "" || len(m) != 2 {
					t.Errorf("%s %s: %v, want error_code %v and a message, nothing else", tc.method, tc.path, got, code)
				}
				continue
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %s:\n got  %v\n want %v", tc.method, tc.path, got, tc.want)
			}
		default:
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s %s:\n got  %v\n want %v", tc.method, tc.path, got, tc.want)
			}
		}
	}
	// A raw schema text where Confluent answers one.
	req, _ := http.NewRequest("GET", url+"/subjects/"+subject+"/versions/1/schema", nil)
	req.SetBasicAuth(adminUser, adminPass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(raw) != s {
		t.Errorf("the schema text of a version: %d %.80s", resp.StatusCode, raw)
	}
	// Unauthenticated: 401 in the same shape.
	req, _ = http.NewRequest("GET", url+"/subjects", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 401 || e["error_code"] != float64(401) {
		t.Errorf("anonymous: %d %v", resp.StatusCode, e)
	}
}
