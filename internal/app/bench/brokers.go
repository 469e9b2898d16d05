package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/embedded"
	"github.com/jutong/jutong/internal/kafkaconn"
)

// The benchmarks can run the embedded brokers in a process of their own
// (--brokers-process), as a deployment runs Kafka apart from the bus, so
// that the CPU the bench reports for the bus is the bus's and the brokers'
// is printed apart.

// envBrokersPassword passes the admin's password to the brokers' process
// (not on its command line, which ps shows to everyone).
const envBrokersPassword = "JUTONG_BENCH_BROKERS_PASSWORD"

// benchBrokers runs `jutong bench brokers`: an embedded cluster on free
// loopback ports, its log in memory, until stdin closes (its parent went
// away) or it is signalled. It prints "brokers <host:port>,..." once up.
func benchBrokers(ctx context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("bench brokers", benchDesc, errOut)
	n := fs.Int("broker-count", 3, "brokers")
	user := fs.String("kafka-user", "jutong", "the SCRAM superuser; its password in $"+envBrokersPassword)
	if err := fs.Parse(args); err != nil {
		return err
	}
	password := os.Getenv(envBrokersPassword)
	if password == "" {
		return errors.New("the admin's password is read from $" + envBrokersPassword)
	}
	c, err := embedded.Start(ctx, embedded.Config{Brokers: *n, Ports: make([]int, *n), AdminUser: *user, AdminPassword: password}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(out, "brokers %s\n", strings.Join(c.Addrs(), ","))
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-ctx.Done():
	case <-done:
	}
	return nil
}

// brokersProcess is a running `jutong bench brokers`.
type brokersProcess struct {
	cmd   *exec.Cmd
	stdin io.Closer
	Kafka kafkaconn.Config
}

// startBrokers starts the brokers' process and waits for its addresses.
func startBrokers(ctx context.Context, n int, user, password string, errOut io.Writer) (*brokersProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "bench", "brokers", "--broker-count", fmt.Sprint(n), "--kafka-user", user)
	cmd.Env = append(os.Environ(), envBrokersPassword+"="+password)
	cmd.Stderr = errOut
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	bp := &brokersProcess{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		addrs, found := strings.CutPrefix(l, "brokers ")
		if !ok || !found {
			bp.Stop()
			return nil, fmt.Errorf("the brokers' process did not start (%q)", l)
		}
		bp.Kafka = kafkaconn.Config{Brokers: strings.Split(addrs, ","), User: user, Password: password}
		return bp, nil
	case <-time.After(time.Minute):
		bp.Stop()
		return nil, errors.New("the brokers' process did not start within a minute")
	}
}

// Pid is the brokers' process.
func (bp *brokersProcess) Pid() int { return bp.cmd.Process.Pid }

// Stop ends the brokers' process.
func (bp *brokersProcess) Stop() {
	_ = bp.stdin.Close()
	done := make(chan struct{})
	go func() { _ = bp.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = bp.cmd.Process.Kill()
		<-done
	}
}
