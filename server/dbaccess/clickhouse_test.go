package dbaccess

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsersFileChangesSecond: ClickHouse sees a change of the users file by
// its modification time, to the second; two writes within one second still
// differ there, and the second holds its user.
func TestUsersFileChangesSecond(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, UsersFile)
	if err := WriteUsersFile(dir, []Analyst{{User: "jutong_analyst_a", Password: "pa", Database: "db_a"}}); err != nil {
		t.Fatal(err)
	}
	first, _ := os.Stat(path)
	if err := WriteUsersFile(dir, []Analyst{{User: "jutong_analyst_a", Password: "pa", Database: "db_a"}, {User: "jutong_analyst_b", Password: "pb", Database: "db_b"}}); err != nil {
		t.Fatal(err)
	}
	second, _ := os.Stat(path)
	if second.ModTime().Unix() <= first.ModTime().Unix() {
		t.Errorf("two writes dated %s and %s: ClickHouse would not read the second", first.ModTime(), second.ModTime())
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "<jutong_analyst_b>") || strings.Contains(string(b), ">pb<") {
		t.Errorf("the file: %s", b)
	}
	if second.Mode().Perm() != 0o600 {
		t.Errorf("the file is %v", second.Mode().Perm())
	}
}
