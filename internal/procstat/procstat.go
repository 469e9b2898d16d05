// Package procstat reads a process's CPU time and memory from /proc (Linux;
// zeros elsewhere): how the benchmarks judge a change by CPU per event,
// for this process and for the database servers beside it.
package procstat

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ, 100 on every Linux that Go runs on.
const clockTick = 100

// Tree is the CPU time (user + system) a process and its children used:
// its own, that of its children it has waited for, and that of its live
// children (PostgreSQL's backends, for instance). Linux only; 0 elsewhere.
func Tree(pid int) time.Duration {
	total, _ := CPU(pid, true)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if cpu, parent := CPU(child, false); parent == pid {
			total += cpu
		}
	}
	return total
}

// CPU reads utime + stime (and, with waited, cutime + cstime) and the
// parent pid from /proc/<pid>/stat.
func CPU(pid int, waited bool) (time.Duration, int) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0
	}
	// The command name (field 2) may hold spaces: fields start after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return 0, 0
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k-3], 10, 64); return n }
	ticks := num(14) + num(15)
	if waited {
		ticks += num(16) + num(17)
	}
	ppid, _ := strconv.Atoi(f[1])
	return time.Duration(ticks) * time.Second / clockTick, ppid
}

// RSS reads a process's resident set and its peak (VmRSS, VmHWM) in KiB.
func RSS(pid int) (rss, peak int64) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			peak = n
		}
	}
	return rss, peak
}
