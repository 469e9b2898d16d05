package cli

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jutong/jutong/internal/cmdflag"
)

func TestFlagSet(t *testing.T) {
	t.Setenv("JUTONG_TEST_NAME", "from-env")
	t.Setenv("JUTONG_TEST_N", "7")
	fs := cmdflag.New("test", "", io.Discard)
	name := fs.EnvString("name", "JUTONG_TEST_NAME", "default", "a name")
	var n int
	fs.EnvIntVar(&n, "n", "JUTONG_TEST_N", 1, "a number")
	grade := fs.Int("grade", 0, "")
	if err := fs.Parse([]string{"ID", "--grade", "2", "more"}); err != nil {
		t.Fatal(err)
	}
	if *name != "from-env" || n != 7 || *grade != 2 || !slices.Equal(fs.Args(), []string{"ID", "more"}) || fs.Arg(0) != "ID" || fs.NArg() != 2 {
		t.Fatalf("name %q n %d grade %d args %v", *name, n, *grade, fs.Args())
	}
	if u := fs.Lookup("name").Usage; u != "a name (JUTONG_TEST_NAME)" {
		t.Fatalf("usage %q: the help must name the variable", u)
	}
	// A flag beats the environment.
	if err := fs.Parse([]string{"--n", "9"}); err != nil || n != 9 || fs.NArg() != 0 {
		t.Fatalf("n %d, args %v, %v", n, fs.Args(), err)
	}
	// A value of the wrong type in the environment is an error, not ignored.
	t.Setenv("JUTONG_TEST_N", "seven")
	bad := cmdflag.New("test", "", io.Discard)
	bad.EnvIntVar(&n, "n", "JUTONG_TEST_N", 1, "a number")
	if err := bad.Parse(nil); err == nil || !strings.Contains(err.Error(), "JUTONG_TEST_N") {
		t.Fatalf("want an error naming JUTONG_TEST_N, got %v", err)
	}
}
