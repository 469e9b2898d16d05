package dbaccess

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Analyst is a department's analysts' ClickHouse user: it reads Database
// only, and writes nothing.
type Analyst struct {
	User, Password, Database string
}

// AnalystUser is the ClickHouse user of a department's analysts.
func AnalystUser(prefix, dept string) string { return prefix + "analyst_" + dept }

// UsersFile is the users.d file the bus keeps on a ClickHouse without SQL
// access management (18.16): its analysts, each readonly, on its database
// only (allow_databases), its queries logged (log_queries: the audit).
const UsersFile = "jutong-analysts.xml"

// WriteUsersFile writes the analysts into dir/UsersFile (0600, replaced
// whole, when it changed); ClickHouse reloads it within seconds.
func WriteUsersFile(dir string, analysts []Analyst) error {
	var b bytes.Buffer
	b.WriteString("<?xml version=\"1.0\"?>\n<!-- Written by jutong from the grants: edits are overwritten. -->\n<yandex>\n")
	b.WriteString("  <profiles><jutong_analyst><readonly>1</readonly><log_queries>1</log_queries><max_memory_usage>4000000000</max_memory_usage></jutong_analyst></profiles>\n  <users>\n")
	slices.SortFunc(analysts, func(a, b Analyst) int { return strings.Compare(a.User, b.User) })
	for _, a := range analysts {
		sum := sha256.Sum256([]byte(a.Password))
		fmt.Fprintf(&b, "    <%s><password_sha256_hex>%s</password_sha256_hex><networks><ip>::/0</ip></networks><profile>jutong_analyst</profile><quota>default</quota>", a.User, hex.EncodeToString(sum[:]))
		b.WriteString("<allow_databases><database>")
		_ = xml.EscapeText(&b, []byte(a.Database))
		b.WriteString("</database></allow_databases></" + a.User + ">\n")
	}
	b.WriteString("  </users>\n</yandex>\n")
	path := filepath.Join(dir, UsersFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b.Bytes()) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return err
	}
	// ClickHouse notices a change by the file's modification time, to the
	// second: a second write within the second of the first would never be
	// read. Date this one a second later.
	if old, err := os.Stat(path); err == nil {
		if next := old.ModTime().Truncate(time.Second).Add(time.Second); !time.Now().After(next) {
			if err := os.Chtimes(tmp, next, next); err != nil {
				return err
			}
		}
	}
	return os.Rename(tmp, path)
}

// HasAccessManagement says whether the server takes CREATE USER (SQL
// access management, ClickHouse 20.4 and later).
func HasAccessManagement(ctx context.Context, conn driver.Conn) bool {
	v, err := conn.ServerVersion()
	return err == nil && (v.Version.Major > 20 || (v.Version.Major == 20 && v.Version.Minor >= 4))
}

// ReconcileClickHouse makes the analysts' users with SQL access management:
// each identified by its password, readonly, reading its database only;
// users beginning with prefix+"analyst_" that no analyst names are dropped.
func ReconcileClickHouse(ctx context.Context, conn driver.Conn, prefix string, analysts []Analyst) error {
	want := map[string]bool{}
	for _, a := range analysts {
		want[a.User] = true
		user := "`" + a.User + "`"
		for _, stmt := range []string{
			"CREATE USER IF NOT EXISTS " + user,
			fmt.Sprintf("ALTER USER %s IDENTIFIED WITH sha256_password BY '%s' SETTINGS readonly = 1, log_queries = 1", user, strings.ReplaceAll(a.Password, "'", "\\'")),
			"REVOKE ALL ON *.* FROM " + user,
			"GRANT SELECT ON `" + a.Database + "`.* TO " + user,
		} {
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("dbaccess: clickhouse user %s: %w", a.User, err)
			}
		}
	}
	rows, err := conn.Query(ctx, "SELECT name FROM system.users WHERE startsWith(name, ?)", prefix+"analyst_")
	if err != nil {
		return err
	}
	defer rows.Close()
	var drop []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		if !want[n] {
			drop = append(drop, n)
		}
	}
	for _, n := range drop {
		if err := conn.Exec(ctx, "DROP USER IF EXISTS `"+n+"`"); err != nil {
			return err
		}
	}
	return rows.Err()
}
