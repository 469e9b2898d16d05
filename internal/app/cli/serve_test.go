package cli

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jutong/jutong/internal/embedded"
	"github.com/jutong/jutong/internal/tlsca"
)

// TestServeOverTLS: jutong serve against a cluster that speaks SASL_SSL
// only, with its certificates given by file: it connects (trusting the CA)
// and serves the registry over HTTPS, to principals only; `jutong certs`
// made the certificates.
func TestServeOverTLS(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, "certs", "--dir", filepath.Join(dir, "tls"), "--hosts", "jutong.internal"); err != nil || !strings.Contains(out, "ca.pem") {
		t.Fatalf("certs: %v %s", err, out)
	}
	files, err := tlsca.Ensure(filepath.Join(dir, "tls"), "jutong.internal")
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := tlsca.Server(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	const admin, pass = "jutong", "a-long-admin-secret-for-this-test"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster, err := embedded.Start(ctx, embedded.Config{Brokers: 1, Ports: []int{0}, AdminUser: admin, AdminPassword: pass, TLS: srvTLS, CAFile: files.CA},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	sctx, stop := context.WithCancel(ctx)
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(sctx, []string{"serve", "--brokers", strings.Join(cluster.Addrs(), ","), "--kafka-user", admin, "--kafka-password", pass,
			"--tls-cert", files.Cert, "--tls-key", files.Key, "--ca", files.CA, "--secrets-dir", filepath.Join(dir, "secrets"),
			"--registry-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, &out, &errOut)
	}()
	defer func() { stop(); <-done }()
	var reg string
	for deadline := time.Now().Add(time.Minute); reg == ""; time.Sleep(50 * time.Millisecond) {
		if m := regexp.MustCompile(`registry (https://\S+),`).FindStringSubmatch(out.String()); m != nil {
			reg = m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s %s", out.String(), errOut.String())
		}
	}
	_, hc := devTLS(t, dir)
	resp, err := hc.Get(reg + "/subjects")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous GET /subjects over HTTPS: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", reg+"/subjects", nil)
	req.SetBasicAuth(admin, pass)
	if resp, err = hc.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the admin over HTTPS: %v %v", err, resp)
	}
	resp.Body.Close()
}
