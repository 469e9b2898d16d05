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
package localsvc
