package registry

import (
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"
)

// Level is a subject's compatibility level, as in Confluent's registry.
type Level string

// The compatibility levels.
const (
	None               Level = "NONE"
	Backward           Level = "BACKWARD"
	BackwardTransitive Level = "BACKWARD_TRANSITIVE"
	Forward            Level = "FORWARD"
	ForwardTransitive  Level = "FORWARD_TRANSITIVE"
	Full               Level = "FULL"
	FullTransitive     Level = "FULL_TRANSITIVE"
)

// DefaultLevel is the level of a subject without its own: every new
// version must read everything ever written to the topic.
const DefaultLevel = BackwardTransitive

// Valid reports whether l is a known level.
func (l Level) Valid() bool {
	switch l {
	case None, Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive:
		return true
	}
	return false
}

func (l Level) transitive() bool { return strings.HasSuffix(string(l), "_TRANSITIVE") }
func (l Level) backward() bool {
	return l == Backward || l == BackwardTransitive || l == Full || l == FullTransitive
}
func (l Level) forward() bool {
	return l == Forward || l == ForwardTransitive || l == Full || l == FullTransitive
}

// Check returns the reasons why candidate may not follow the existing
// versions (oldest first) under level; none means compatible.
func Check(level Level, candidate avro.Schema, existing []avro.Schema) []string {
	if level == None || len(existing) == 0 {
		return nil
	}
	against := existing
	if !level.transitive() {
		against = existing[len(existing)-1:]
	}
	var msgs []string
	for _, old := range against {
		if level.backward() {
			for _, p := range canRead(candidate, old, "") {
				msgs = append(msgs, "BACKWARD: the new schema cannot read data written with an existing version: "+p)
			}
		}
		if level.forward() {
			for _, p := range canRead(old, candidate, "") {
				msgs = append(msgs, "FORWARD: an existing version cannot read data written with the new schema: "+p)
			}
		}
	}
	return dedupe(msgs)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func logical(s avro.Schema) string {
	ls, ok := s.(avro.LogicalTypeSchema)
	if !ok || ls.Logical() == nil {
		return ""
	}
	if d, ok := ls.Logical().(*avro.DecimalLogicalSchema); ok {
		return fmt.Sprintf("decimal(%d,%d)", d.Precision(), d.Scale())
	}
	return string(ls.Logical().Type())
}

func describe(s avro.Schema) string {
	s = deref(s)
	if l := logical(s); l != "" {
		return string(s.Type()) + "/" + l
	}
	if n, ok := s.(avro.NamedSchema); ok {
		return string(s.Type()) + " " + n.FullName()
	}
	return string(s.Type())
}

func at(path string) string {
	if path == "" {
		return "the record"
	}
	return "field " + path
}

// promotable lists the Avro type promotions a reader may apply.
var promotable = map[avro.Type][]avro.Type{
	avro.Int:    {avro.Long, avro.Float, avro.Double},
	avro.Long:   {avro.Float, avro.Double},
	avro.Float:  {avro.Double},
	avro.String: {avro.Bytes},
	avro.Bytes:  {avro.String},
}

// canRead lists why reader cannot read data written with writer; path names
// the field being compared (data.registered_capital).
func canRead(reader, writer avro.Schema, path string) []string {
	reader, writer = deref(reader), deref(writer)
	if wu, ok := writer.(*avro.UnionSchema); ok {
		var out []string
		for _, w := range wu.Types() {
			if ru, isUnion := reader.(*avro.UnionSchema); isUnion {
				if !anyReads(ru, w, path) {
					out = append(out, closest(ru, w, path)...)
				}
				continue
			}
			if len(canRead(reader, w, path)) > 0 && deref(w).Type() != reader.Type() {
				out = append(out, fmt.Sprintf("%s: %s values (a branch of the writer's union) cannot be read as %s", at(path), describe(w), describe(reader)))
				continue
			}
			out = append(out, canRead(reader, w, path)...)
		}
		return out
	}
	if ru, ok := reader.(*avro.UnionSchema); ok {
		if anyReads(ru, writer, path) {
			return nil
		}
		return closest(ru, writer, path)
	}
	if reader.Type() != writer.Type() {
		for _, t := range promotable[writer.Type()] {
			if t == reader.Type() && logical(reader) == "" && logical(writer) == "" {
				return nil
			}
		}
		return []string{fmt.Sprintf("%s: type changed from %s to %s", at(path), describe(writer), describe(reader))}
	}
	if lr, lw := logical(reader), logical(writer); lr != lw {
		return []string{fmt.Sprintf("%s: logical type changed from %s to %s", at(path), describe(writer), describe(reader))}
	}
	switch r := reader.(type) {
	case *avro.RecordSchema:
		w := writer.(*avro.RecordSchema)
		if !sameName(r, w) {
			return []string{fmt.Sprintf("%s: record name changed from %s to %s", at(path), w.FullName(), r.FullName())}
		}
		var out []string
		for _, rf := range r.Fields() {
			p := join(path, rf.Name())
			wf := findField(w, rf)
			if wf == nil {
				if !rf.HasDefault() {
					out = append(out, fmt.Sprintf("field %s: added without a default, so records written before it cannot be read", p))
				}
				continue
			}
			out = append(out, canRead(rf.Type(), wf.Type(), p)...)
		}
		return out
	case *avro.EnumSchema:
		w := writer.(*avro.EnumSchema)
		if !sameName(r, w) {
			return []string{fmt.Sprintf("%s: enum name changed from %s to %s", at(path), w.FullName(), r.FullName())}
		}
		if r.HasDefault() {
			return nil
		}
		var missing []string
		for _, s := range w.Symbols() {
			if !contains(r.Symbols(), s) {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			return []string{fmt.Sprintf("%s: symbols %s were removed (and the enum has no default)", at(path), strings.Join(missing, ", "))}
		}
	case *avro.FixedSchema:
		w := writer.(*avro.FixedSchema)
		if !sameName(r, w) || r.Size() != w.Size() {
			return []string{fmt.Sprintf("%s: fixed changed from %s[%d] to %s[%d]", at(path), w.FullName(), w.Size(), r.FullName(), r.Size())}
		}
	case *avro.ArraySchema:
		return canRead(r.Items(), writer.(*avro.ArraySchema).Items(), path+"[]")
	case *avro.MapSchema:
		return canRead(r.Values(), writer.(*avro.MapSchema).Values(), path+"{}")
	}
	return nil
}

// closest explains why no branch of ru reads w: the reasons of the branch of
// the same type (a record's field-level reasons), else a summary.
func closest(ru *avro.UnionSchema, w avro.Schema, path string) []string {
	for _, r := range ru.Types() {
		if deref(r).Type() == deref(w).Type() {
			return canRead(r, w, path)
		}
	}
	return []string{fmt.Sprintf("%s: %s cannot be read as any branch of the union", at(path), describe(w))}
}

func anyReads(ru *avro.UnionSchema, w avro.Schema, path string) bool {
	for _, r := range ru.Types() {
		if len(canRead(r, w, path)) == 0 {
			return true
		}
	}
	return false
}

func sameName(r, w avro.NamedSchema) bool {
	if r.FullName() == w.FullName() {
		return true
	}
	for _, a := range r.Aliases() {
		if a == w.FullName() {
			return true
		}
	}
	return false
}

func findField(w *avro.RecordSchema, rf *avro.Field) *avro.Field {
	for _, f := range w.Fields() {
		if f.Name() == rf.Name() {
			return f
		}
	}
	for _, a := range rf.Aliases() {
		for _, f := range w.Fields() {
			if f.Name() == a {
				return f
			}
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
