package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/jutong/jutong/model/topicname"
	"github.com/jutong/jutong/schemas"
)

// DefaultTopic is the compacted topic holding the registry's state.
const DefaultTopic = topicname.Schemas

// Version is one version of a subject.
type Version struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
	Deleted bool   `json:"deleted,omitempty"`
}

type recordKey struct {
	Kind    string `json:"kind"` // "schema" or "config"
	Subject string `json:"subject"`
	Version int    `json:"version,omitempty"`
}

// configValue is a compatibility level record; subject "" is the global one.
type configValue struct {
	Compatibility Level `json:"compatibility"`
}

// Store is the registry state, replicated through a Kafka topic.
type Store struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger

	mu       sync.RWMutex
	applied  int64 // next offset of the topic to apply
	changed  *sync.Cond
	subjects map[string][]*Version // by subject, ordered by version
	byID     map[int]string        // id -> schema text
	idOf     map[string]int        // compacted schema text -> id
	maxID    int
	levels   map[string]Level // by subject; "" is the global level

	writeMu sync.Mutex // serialises this instance's writes
	stop    context.CancelFunc
	done    chan struct{}
}

// Open creates the topic if needed, reads it to its end and keeps tailing it
// until Close. cl must be allowed to create, read and write the topic.
func Open(ctx context.Context, cl *kgo.Client, topic string, log *slog.Logger) (*Store, error) {
	if topic == "" {
		topic = DefaultTopic
	}
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{
		"cleanup.policy": kadm.StringPtr("compact"),
	}, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return nil, fmt.Errorf("registry: create topic %s: %w", topic, err)
	}
	if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
		return nil, fmt.Errorf("registry: create topic %s: %w", topic, resp.Err)
	}
	s := &Store{
		topic: topic, log: log,
		subjects: make(map[string][]*Version),
		byID:     make(map[int]string),
		idOf:     make(map[string]int),
		levels:   make(map[string]Level),
		done:     make(chan struct{}),
	}
	s.changed = sync.NewCond(s.mu.RLocker())
	// The tailing consumer is its own client so that it can consume the
	// topic from the start without touching the caller's client.
	tail, err := kgo.NewClient(append(cl.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
	)...)
	if err != nil {
		return nil, err
	}
	s.cl = tail
	end, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		tail.Close()
		return nil, fmt.Errorf("registry: end offset of %s: %w", topic, err)
	}
	var hw int64
	if o, ok := end.Lookup(topic, 0); ok {
		hw = o.Offset
	}
	tctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.tailLoop(tctx)
	if err := s.waitApplied(ctx, hw); err != nil {
		s.Close()
		return nil, err
	}
	log.Info("schema registry loaded", "topic", topic, "records", hw, "subjects", len(s.subjects))
	return s, nil
}

// Close stops tailing and closes the client Open created.
func (s *Store) Close() {
	s.stop()
	<-s.done
	s.cl.Close()
}

func (s *Store) tailLoop(ctx context.Context) {
	defer close(s.done)
	for {
		fs := s.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			s.log.Warn("registry: fetch", "topic", t, "partition", p, "err", err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			s.mu.Lock()
			s.apply(r)
			s.applied = r.Offset + 1
			s.mu.Unlock()
		})
		s.changed.Broadcast()
	}
}

// waitApplied blocks until every record before offset is applied.
func (s *Store) waitApplied(ctx context.Context, offset int64) error {
	stop := context.AfterFunc(ctx, s.changed.Broadcast)
	defer stop()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for s.applied < offset {
		if ctx.Err() != nil {
			return fmt.Errorf("registry: catching up with %s: %w", s.topic, ctx.Err())
		}
		s.changed.Wait()
	}
	return nil
}

// apply applies one record of the topic; the caller holds mu. Every
// instance applies the same records in the same order, and a record that
// conflicts with what is already applied (an id or version another instance
// took first) is ignored by all of them alike; its writer sees that and retries.
func (s *Store) apply(r *kgo.Record) {
	var k recordKey
	if err := json.Unmarshal(r.Key, &k); err != nil {
		return
	}
	switch k.Kind {
	case "config":
		var c configValue
		if r.Value == nil || json.Unmarshal(r.Value, &c) != nil || !c.Compatibility.Valid() {
			delete(s.levels, k.Subject)
			return
		}
		s.levels[k.Subject] = c.Compatibility
		return
	case "schema":
	default:
		return
	}
	versions := s.subjects[k.Subject]
	if r.Value == nil { // tombstone: permanent delete
		for i, v := range versions {
			if v.Version == k.Version {
				s.subjects[k.Subject] = append(versions[:i:i], versions[i+1:]...)
				break
			}
		}
		return
	}
	var v Version
	if err := json.Unmarshal(r.Value, &v); err != nil {
		s.log.Warn("registry: bad record", "offset", r.Offset, "err", err)
		return
	}
	text := compact(v.Schema)
	if other, ok := s.byID[v.ID]; ok && compact(other) != text {
		s.log.Info("registry: id taken by another instance, record ignored", "id", v.ID, "subject", v.Subject)
		return
	}
	for i, old := range versions {
		if old.Version == v.Version {
			if old.ID != v.ID {
				s.log.Info("registry: version taken by another instance, record ignored", "subject", v.Subject, "version", v.Version)
				return
			}
			versions[i] = &v // a soft delete
			return
		}
	}
	if _, ok := s.byID[v.ID]; !ok {
		s.byID[v.ID] = v.Schema
		s.idOf[text] = v.ID
	}
	s.maxID = max(s.maxID, v.ID)
	versions = append(versions, &v)
	sort.Slice(versions, func(i, j int) bool { return versions[i].Version < versions[j].Version })
	s.subjects[k.Subject] = versions
}

// write produces one record and waits until this instance has applied it.
func (s *Store) write(ctx context.Context, key recordKey, value any) error {
	kb, _ := json.Marshal(key)
	var vb []byte
	if value != nil {
		vb, _ = json.Marshal(value)
	}
	r := &kgo.Record{Topic: s.topic, Key: kb, Value: vb}
	if err := s.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("registry: write %s: %w", s.topic, err)
	}
	return s.waitApplied(ctx, r.Offset+1)
}

func compact(schema string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(schema)) != nil {
		return schema
	}
	return b.String()
}

// Error is a registry error with Confluent's error code.
type Error struct {
	HTTP    int
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

var (
	errSubjectNotFound = func(s string) error { return &Error{404, 40401, fmt.Sprintf("Subject '%s' not found.", s)} }
	errVersionNotFound = func(v string) error { return &Error{404, 40402, fmt.Sprintf("Version %s not found.", v)} }
	errSchemaNotFound  = &Error{404, 40403, "Schema not found"}
	errIncompatible    = func(subject string, msgs []string) error {
		return &Error{409, 409, fmt.Sprintf("Schema being registered is incompatible with an earlier schema for subject %q, details: [%s]", subject, strings.Join(msgs, "; "))}
	}
	errNotSoftDeleted = func(subject string, v int) error {
		return &Error{404, 40407, fmt.Sprintf("Subject '%s' Version %d was not deleted first before being permanently deleted", subject, v)}
	}
	errInvalidLevel = func(l string) error {
		return &Error{422, 42203, fmt.Sprintf("Invalid compatibility level %q. Valid values are NONE, BACKWARD, FORWARD, FULL, BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE, and FULL_TRANSITIVE", l)}
	}
)

// Register adds schema to subject, or returns the existing version when the
// subject already holds the same schema. A schema incompatible with the
// subject's earlier versions under its level is refused (409).
func (s *Store) Register(ctx context.Context, subject, schema string) (*Version, error) {
	parsed, err := schemas.ParseAvro(schema)
	if err != nil {
		return nil, &Error{422, 42201, "Invalid schema: " + err.Error()}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for attempt := 0; attempt < 30; attempt++ {
		if attempt > 0 {
			// Lost a race to another instance: back off a random while so
			// that the two stop taking the same numbers in step.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(10*time.Millisecond) * int64(min(attempt, 10))))):
			}
		}
		if v, err := s.Lookup(subject, schema); err == nil {
			return v, nil
		}
		if msgs := s.check(subject, parsed); len(msgs) > 0 {
			return nil, errIncompatible(subject, msgs)
		}
		s.mu.RLock()
		id, known := s.idOf[compact(schema)]
		if !known {
			id = s.maxID + 1
		}
		next := 1
		if versions := s.subjects[subject]; len(versions) > 0 {
			next = versions[len(versions)-1].Version + 1
		}
		s.mu.RUnlock()
		v := &Version{Subject: subject, Version: next, ID: id, Schema: schema}
		if err := s.write(ctx, recordKey{Kind: "schema", Subject: subject, Version: next}, v); err != nil {
			return nil, err
		}
		// If another instance took the id or version first, our record was
		// ignored everywhere: look again and retry with fresh numbers.
	}
	return nil, &Error{500, 50001, "Error in the backend data store: concurrent registrations kept conflicting"}
}

// check lists why schema may not be added to subject under its level.
func (s *Store) check(subject string, schema avro.Schema) []string {
	level := s.Level(subject)
	s.mu.RLock()
	var existing []avro.Schema
	for _, v := range s.subjects[subject] {
		if v.Deleted {
			continue
		}
		if p, err := schemas.ParseAvro(v.Schema); err == nil {
			existing = append(existing, p)
		}
	}
	s.mu.RUnlock()
	return Check(level, schema, existing)
}

// CheckVersion lists why schema is not compatible with version n of subject
// (n = -1: the latest), in the directions the subject's level requires.
func (s *Store) CheckVersion(subject string, n int, schema string) ([]string, error) {
	parsed, err := schemas.ParseAvro(schema)
	if err != nil {
		return nil, &Error{422, 42201, "Invalid schema: " + err.Error()}
	}
	v, err := s.Get(subject, n)
	if err != nil {
		return nil, err
	}
	old, err := schemas.ParseAvro(v.Schema)
	if err != nil {
		return nil, err
	}
	level := s.Level(subject)
	if level.transitive() { // one version named: compare with it alone
		level = Level(strings.TrimSuffix(string(level), "_TRANSITIVE"))
	}
	return Check(level, parsed, []avro.Schema{old}), nil
}

// Level returns the subject's compatibility level, else the global one,
// else DefaultLevel.
func (s *Store) Level(subject string) Level {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if l, ok := s.levels[subject]; ok {
		return l
	}
	if l, ok := s.levels[""]; ok {
		return l
	}
	return DefaultLevel
}

// SubjectLevel returns the level set on subject itself ("" for global).
func (s *Store) SubjectLevel(subject string) (Level, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.levels[subject]
	return l, ok
}

// SetLevel sets subject's compatibility level ("" for the global level).
func (s *Store) SetLevel(ctx context.Context, subject string, l Level) error {
	if !l.Valid() {
		return errInvalidLevel(string(l))
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.write(ctx, recordKey{Kind: "config", Subject: subject}, configValue{l})
}

// DeleteLevel removes subject's own level, falling back to the global one,
// and returns it; subject "" removes the global level, falling back to
// DefaultLevel.
func (s *Store) DeleteLevel(ctx context.Context, subject string) (Level, error) {
	l, ok := s.SubjectLevel(subject)
	if subject == "" {
		l, ok = s.Level(""), true
	}
	if !ok {
		return "", errSubjectNotFound(subject)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return l, s.write(ctx, recordKey{Kind: "config", Subject: subject}, nil)
}

// Lookup finds the live version of subject holding schema.
func (s *Store) Lookup(subject, schema string) (*Version, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	versions, ok := s.subjects[subject]
	if !ok {
		return nil, errSubjectNotFound(subject)
	}
	text := compact(schema)
	for _, v := range versions {
		if !v.Deleted && compact(v.Schema) == text {
			c := *v
			return &c, nil
		}
	}
	return nil, errSchemaNotFound
}

// Subjects lists subjects with at least one live version.
func (s *Store) Subjects() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []string{}
	for name, versions := range s.subjects {
		for _, v := range versions {
			if !v.Deleted {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// Versions lists the live version numbers of subject.
func (s *Store) Versions(subject string) ([]int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []int
	for _, v := range s.subjects[subject] {
		if !v.Deleted {
			out = append(out, v.Version)
		}
	}
	if len(out) == 0 {
		return nil, errSubjectNotFound(subject)
	}
	return out, nil
}

// Get returns live version n of subject; n = -1 means the latest.
func (s *Store) Get(subject string, n int) (*Version, error) { return s.GetMatching(subject, n, false) }

// SchemaByID returns the schema text registered under id.
func (s *Store) SchemaByID(id int) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	text, ok := s.byID[id]
	if !ok {
		return "", errSchemaNotFound
	}
	return text, nil
}

// DeleteVersion deletes version n of subject (n = -1: the latest): soft
// (hidden, its id still resolves) or, once soft-deleted, permanently.
func (s *Store) DeleteVersion(ctx context.Context, subject string, n int, permanent bool) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if !permanent {
		v, err := s.Get(subject, n)
		if err != nil {
			return 0, err
		}
		v.Deleted = true
		return v.Version, s.write(ctx, recordKey{Kind: "schema", Subject: subject, Version: v.Version}, v)
	}
	s.mu.RLock()
	var found *Version
	for _, v := range s.subjects[subject] {
		if v.Version == n {
			found = v
		}
	}
	s.mu.RUnlock()
	switch {
	case found == nil && len(s.subjects[subject]) == 0:
		return 0, errSubjectNotFound(subject)
	case found == nil:
		return 0, errVersionNotFound(fmt.Sprint(n))
	case !found.Deleted:
		return 0, errNotSoftDeleted(subject, n)
	}
	return n, s.write(ctx, recordKey{Kind: "schema", Subject: subject, Version: n}, nil)
}

// DeleteSubject deletes every version of subject (soft, or permanent after
// a soft delete) and returns their numbers.
func (s *Store) DeleteSubject(ctx context.Context, subject string, permanent bool) ([]int, error) {
	s.mu.RLock()
	var todo []int
	for _, v := range s.subjects[subject] {
		if permanent || !v.Deleted {
			todo = append(todo, v.Version)
		}
	}
	s.mu.RUnlock()
	if len(todo) == 0 {
		return nil, errSubjectNotFound(subject)
	}
	for _, n := range todo {
		if _, err := s.DeleteVersion(ctx, subject, n, permanent); err != nil {
			return nil, err
		}
	}
	return todo, nil
}

// waitTimeout bounds how long an HTTP request waits for Kafka.
const waitTimeout = 30 * time.Second
