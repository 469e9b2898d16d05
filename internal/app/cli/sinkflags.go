package cli

import (
	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/pipeline/chsink"
	"github.com/jutong/jutong/pipeline/pgsink"
	"github.com/jutong/jutong/pipeline/sinks"
)

// sinkDSNs are the databases of the sink kinds (package sinks), one flag
// and environment variable each, by kind.
type sinkDSNs map[string]*string

// registerSinkFlags declares a DSN flag per sink kind; what says what an
// empty one means.
func registerSinkFlags(fs *cmdflag.FlagSet, what func(k sinks.Kind) string) sinkDSNs {
	out := sinkDSNs{}
	for _, k := range sinks.Kinds() {
		out[k.Name] = fs.EnvString(k.Flag, k.Env, "", k.Usage+"; "+what(k))
	}
	return out
}

// split gives the bus's two databases apart from the other kinds' (the
// bus's own PostgreSQL and ClickHouse serve more than their sinks).
func (d sinkDSNs) split() (pg, ch string, others map[string]string) {
	others = map[string]string{}
	for kind, dsn := range d {
		switch kind {
		case pgsink.Kind:
			pg = *dsn
		case chsink.Kind:
			ch = *dsn
		default:
			if *dsn != "" {
				others[kind] = *dsn
			}
		}
	}
	return pg, ch, others
}
