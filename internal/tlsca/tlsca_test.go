package tlsca

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestEnsure: the CA and the server certificate are made once, private,
// kept while valid, renewed for new hosts under the same CA; a client
// trusting ca.pem completes a handshake with the server's configuration,
// and one that does not is refused.
func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	f, err := Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, f.CA, f.Cert, f.Key, f.Bundle, filepath.Join(dir, "ca-key.pem")} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v %v", p, st.Mode().Perm(), err)
		}
	}
	before, _ := os.ReadFile(f.Cert)
	caBefore, _ := os.ReadFile(f.CA)
	if _, err := Ensure(dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(f.Cert); string(again) != string(before) {
		t.Error("a valid certificate was replaced")
	}
	if _, err := Ensure(dir, "kafka1", "10.1.2.3"); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(f.Cert); string(again) == string(before) {
		t.Error("new hosts did not renew the certificate")
	}
	if ca, _ := os.ReadFile(f.CA); string(ca) != string(caBefore) {
		t.Error("the CA changed: every client would have to trust a new one")
	}

	srv, err := Server(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
	cli, err := Client(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "kafka1"} {
		cfg := cli.Clone()
		cfg.ServerName = host
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != "ok" {
			t.Fatalf("%s: read %q", host, b)
		}
	}
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "127.0.0.1"}); err == nil {
		c.Close()
		t.Error("a client without the CA completed the handshake")
	}
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: cli.RootCAs, ServerName: "elsewhere.example"}); err == nil {
		c.Close()
		t.Error("the certificate passed for a host it does not name")
	}
}
