// Package freeport hands out loopback TCP ports for servers that must be
// told their port before they bind it (the embedded brokers, a local
// PostgreSQL or ClickHouse).
//
// Asking the kernel for port 0 and closing the listener is racy twice over:
// the port it gives lies in the ephemeral range, where any outgoing
// connection may take it as its local port before the server binds it; and
// two processes (test binaries run in parallel) may be given the same one.
// So ports are chosen below the ephemeral range
// (net.ipv4.ip_local_port_range), and each one handed out is locked, for the
// life of the process, by an flock on a file of its own in a directory
// shared by every process of the machine.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The range ports are chosen from when the kernel's ephemeral range starts
// above it.
const (
	lowest  = 20000
	highest = 32767
)

// Take returns n distinct free loopback ports.
func Take(n int) ([]int, error) {
	lo, hi := lowest, highest
	if eph := ephemeralLow(); eph > 0 && eph-1 < hi {
		hi = eph - 1
	}
	if hi-lo < 1000 {
		return kernelPorts(n) // no room below the ephemeral range: best effort
	}
	dir := filepath.Join(os.TempDir(), "jutong-ports")
	if err := os.MkdirAll(dir, 0o1777); err != nil {
		return nil, err
	}
	_ = os.Chmod(dir, 0o1777) // any user's processes share it (umask aside)
	out := make([]int, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 5000 {
			return nil, errors.New("freeport: no free port found")
		}
		p := lo + rand.IntN(hi-lo+1)
		fd, ok := lock(dir, p)
		if !ok {
			continue // held by a process, this one included
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			syscall.Close(fd) // in use by something that takes no lock
			continue
		}
		l.Close()
		out = append(out, p) // fd stays open, and the lock held, until the process ends

	}
	return out, nil
}

// One returns one free loopback port.
func One() (int, error) {
	ps, err := Take(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// lock takes the port's lock file without waiting. It is a raw file
// descriptor, which no finalizer closes: the lock lasts as long as the
// process. An flock belongs to its open file, so a second Take in the same
// process is refused a port the first holds, as another process is.
func lock(dir string, port int) (int, bool) {
	fd, err := syscall.Open(filepath.Join(dir, strconv.Itoa(port)), syscall.O_CREAT|syscall.O_RDWR|syscall.O_CLOEXEC, 0o666)
	if err != nil {
		return 0, false
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		syscall.Close(fd)
		return 0, false
	}
	return fd, true
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 0.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// kernelPorts asks the kernel, as a last resort.
func kernelPorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
