package registry

import (
	"fmt"
	"sort"
	"strings"
)

// Filter selects versions by their deletion, as Confluent's ?deleted= and
// ?deletedOnly= do: live ones by default, soft-deleted ones too with
// Deleted, only those with DeletedOnly.
type Filter struct {
	Deleted, DeletedOnly bool
}

func (f Filter) keep(v *Version) bool {
	switch {
	case f.DeletedOnly:
		return v.Deleted
	case f.Deleted:
		return true
	}
	return !v.Deleted
}

// SubjectsMatching lists the subjects starting with prefix that have a
// version f keeps, sorted.
func (s *Store) SubjectsMatching(prefix string, f Filter) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []string{}
	for name, versions := range s.subjects {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, v := range versions {
			if f.keep(v) {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// VersionsMatching lists the version numbers of subject f keeps; a subject
// with none (under f, or with Deleted set: at all) is not found.
func (s *Store) VersionsMatching(subject string, f Filter) ([]int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []int{}
	exists := false
	for _, v := range s.subjects[subject] {
		exists = exists || !v.Deleted || f.Deleted || f.DeletedOnly
		if f.keep(v) {
			out = append(out, v.Version)
		}
	}
	if !exists {
		return nil, errSubjectNotFound(subject)
	}
	return out, nil
}

// GetMatching returns version n of subject (n = -1: the latest), a
// soft-deleted one too with deleted.
func (s *Store) GetMatching(subject string, n int, deleted bool) (*Version, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var kept []*Version
	for _, v := range s.subjects[subject] {
		if deleted || !v.Deleted {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		return nil, errSubjectNotFound(subject)
	}
	if n == -1 {
		c := *kept[len(kept)-1]
		return &c, nil
	}
	for _, v := range kept {
		if v.Version == n {
			c := *v
			return &c, nil
		}
	}
	return nil, errVersionNotFound(fmt.Sprint(n))
}

// LookupMatching is Lookup, among soft-deleted versions too with deleted.
func (s *Store) LookupMatching(subject, schema string, deleted bool) (*Version, error) {
	if !deleted {
		return s.Lookup(subject, schema)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	versions, ok := s.subjects[subject]
	if !ok || len(versions) == 0 {
		return nil, errSubjectNotFound(subject)
	}
	text := compact(schema)
	for _, v := range versions {
		if compact(v.Schema) == text {
			c := *v
			return &c, nil
		}
	}
	return nil, errSchemaNotFound
}

// UsagesMatching lists the subject-versions that use schema id (of subject
// alone, when given), soft-deleted ones too with deleted, by subject then
// version.
func (s *Store) UsagesMatching(id int, subject string, deleted bool) []Version {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []Version{}
	for name, versions := range s.subjects {
		if subject != "" && name != subject {
			continue
		}
		for _, v := range versions {
			if v.ID == id && (deleted || !v.Deleted) {
				out = append(out, Version{Subject: v.Subject, Version: v.Version})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Subject != out[j].Subject {
			return out[i].Subject < out[j].Subject
		}
		return out[i].Version < out[j].Version
	})
	return out
}

// SchemasMatching lists the versions of the subjects starting with prefix
// that f keeps (the latest of each alone with latestOnly), by subject then
// version.
func (s *Store) SchemasMatching(prefix string, f Filter, latestOnly bool) []Version {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []Version{}
	for name, versions := range s.subjects {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		var kept []Version
		for _, v := range versions {
			if f.keep(v) {
				kept = append(kept, *v)
			}
		}
		if latestOnly && len(kept) > 0 {
			kept = kept[len(kept)-1:]
		}
		out = append(out, kept...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Subject != out[j].Subject {
			return out[i].Subject < out[j].Subject
		}
		return out[i].Version < out[j].Version
	})
	return out
}
