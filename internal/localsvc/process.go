package localsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jutong/jutong/internal/freeport"
)

// ErrUnavailable is returned when a service has no DSN, no local binaries and
// cannot be installed. Callers print it; tests skip or fail on it.
var ErrUnavailable = errors.New("service unavailable")

// freePort is a free loopback TCP port that no other process is handed.
func freePort() (int, error) { return freeport.One() }

// server is a server process this package started. Its exit is observed
// once, by a goroutine, and published by closing exited: every waiter (the
// start-up check, Stop) sees it, none can take it from another.
type server struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // the exit status, set before exited is closed
}

// startServer starts cmd in its own process group, with stdout and stderr
// appended to logPath (created 0600; never truncated, so the logs of every
// start are kept).
func startServer(cmd *exec.Cmd, logPath string) (*server, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "---- %s: jutong starts %s\n", time.Now().Format(time.RFC3339), strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	return s, nil
}

// pid is the server's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends sig and waits up to grace, or ctx's deadline when it comes
// first, for the server to exit, then kills its process group.
func (s *server) stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error {
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl))
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
		return nil
	case <-time.After(max(grace, 0)):
		_ = syscall.Kill(-s.pid(), syscall.SIGKILL)
		<-s.exited
		return fmt.Errorf("killed: it had not stopped %s after %s", grace.Round(time.Millisecond), sig)
	}
}

// waitPort waits until something accepts connections on addr, and fails at
// once when the server exits first.
func (s *server) waitPort(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("server exited before listening on %s: %v", addr, s.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s", addr, timeout)
		}
	}
}

// stopLeftover stops a server that an earlier run started on the same
// directory and left running (that run was killed before it could stop
// it): pidFile's first line is the server's pid, and the process is ours
// only when its command line names marker (its data directory or its
// configuration file). A pid file whose process is gone, or is another
// program, is ignored. sig is the server's own clean shutdown signal.
func stopLeftover(log *slog.Logger, pidFile, marker string, sig syscall.Signal) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 1 || !cmdlineHas(pid, marker) {
		return nil
	}
	log.Warn("stopping a server left running by an earlier run", "pid", pid, "pidfile", pidFile)
	_ = syscall.Kill(pid, sig)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !alive(pid) {
			return nil
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !alive(pid) {
			return nil
		}
	}
	return fmt.Errorf("a server left running by an earlier run (pid %d, %s) does not stop", pid, pidFile)
}

// cmdlineHas reports whether process pid's command line contains s.
func cmdlineHas(pid int, s string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return err == nil && strings.Contains(string(b), s)
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// reachable reports whether the user of cred can enter dir (search
// permission on dir and every directory above it). Root (nil cred) can.
func reachable(dir string, cred *syscall.Credential) bool {
	if cred == nil {
		return true
	}
	cmd := exec.Command("/bin/sh", "-c", `cd "$1"`, "sh", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd.Run() == nil
}

// credentialFor returns the credential to run a server as when we are root:
// PostgreSQL refuses to run as root, so it runs as the named system user.
func credentialFor(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root needs system user %q: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// chownTree gives dir and everything in it to cred's user.
func chownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

// aptInstall installs Debian packages when running as root with apt-get.
func aptInstall(ctx context.Context, log *slog.Logger, pkgs ...string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root, cannot install %v", ErrUnavailable, pkgs)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%w: no apt-get to install %v", ErrUnavailable, pkgs)
	}
	// Test binaries run in parallel and may all find a package missing:
	// one installs, the others wait and then find it installed.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "jutong-apt.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if installed(pkgs...) {
		return nil
	}
	log.Info("installing Debian packages", "packages", pkgs)
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	upd := exec.CommandContext(ctx, "apt-get", "update", "-qq")
	upd.Env = env
	if out, err := upd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %v: %s", err, out)
	}
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, pkgs...)
	inst := exec.CommandContext(ctx, "apt-get", args...)
	inst.Env = env
	if out, err := inst.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %v: %v: %s", pkgs, err, out)
	}
	return nil
}

// firstExisting returns the first path that exists, or "".
func firstExisting(paths ...string) string {
	for _, p := range paths {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// installed reports whether dpkg lists every package as installed.
func installed(pkgs ...string) bool {
	for _, p := range pkgs {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !strings.Contains(string(out), "install ok installed") {
			return false
		}
	}
	return true
}

// Pid is the server's process id, or 0 when this package did not start it.
func (p *Postgres) Pid() int {
	if p == nil || p.srv == nil {
		return 0
	}
	return p.srv.pid()
}

// Pid is the server's process id, or 0 when this package did not start it.
func (c *ClickHouse) Pid() int {
	if c == nil || c.srv == nil {
		return 0
	}
	return c.srv.pid()
}

// tail returns the last n bytes of a file (a server's log, for an error).
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, 0)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
