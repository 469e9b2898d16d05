// Package localsvc provides the PostgreSQL and ClickHouse servers that the
// tests and `jutong demo` need, without anything installed by hand.
//
// Each service is found in this order:
//
//  1. a DSN in the environment (JUTONG_POSTGRES_DSN, JUTONG_CLICKHOUSE_DSN):
//     used as is, nothing is started or stopped;
//  2. the locally installed Debian binaries (postgresql-15's initdb/pg_ctl,
//     clickhouse-server 18.16): a throwaway server is started in a temporary
//     directory on a free loopback port and removed by Stop;
//  3. when running as root on Debian, the Debian package is installed with
//     apt-get first, then 2 applies.
//
// Callers that need an isolated database (every test) call CreateDatabase on
// the returned server and drop it when done.
//
// A server started on a directory of its own (Options.Dir: `jutong dev` and
// `jutong demo` use their data directory) keeps its data there across
// starts, and its log is appended to, never overwritten. Running as root,
// PostgreSQL runs as user postgres, which must enter every directory above
// its files: when it cannot (a checkout under /root), the files live in
// OutsideRoot/<hash of the directory> instead, and the directory's LOCATION
// file says where. A run killed before it could stop its servers leaves
// them running in their own process groups; the next start on the same
// directory finds them by their pid file (postmaster.pid, clickhouse.pid)
// and stops them before starting anew. A server that exits while starting
// fails the start at once with the end of its log.
package localsvc
