package freeport

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestTakeGivesDistinctBindablePortsBelowTheEphemeralRange(t *testing.T) {
	ps, err := Take(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	eph := ephemeralLow()
	for _, p := range ps {
		if seen[p] {
			t.Fatalf("port %d given twice", p)
		}
		seen[p] = true
		if eph > lowest+1000 && p >= eph {
			t.Errorf("port %d is in the ephemeral range (from %d)", p, eph)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
	}
}

// Another process never gets a port this one holds.
func TestPortsAreLockedAcrossProcesses(t *testing.T) {
	if os.Getenv("FREEPORT_CHILD") != "" {
		ps, err := Take(200)
		if err != nil {
			os.Exit(2)
		}
		for _, p := range ps {
			os.Stdout.WriteString(strconv.Itoa(p) + "\n")
		}
		os.Exit(0)
	}
	mine, err := Take(200)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPortsAreLockedAcrossProcesses$")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	held := map[int]bool{}
	for _, p := range mine {
		held[p] = true
	}
	for _, s := range strings.Fields(string(out)) {
		p, _ := strconv.Atoi(s)
		if held[p] {
			t.Fatalf("the child was given port %d, which this process holds", p)
		}
	}
}
