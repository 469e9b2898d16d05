package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jutong/jutong/internal/cmdflag"
	"github.com/jutong/jutong/internal/tlsca"
)

const certsDesc = `Makes (or renews) a private CA and a server certificate it signs, for a bus that
serves TLS without a company CA: Kafka's SASL_SSL listeners, the registry and the
API over HTTPS. Writes ca.pem (what clients trust), ca-key.pem, server.pem,
server-key.pem and server-bundle.pem (key, certificate and CA in one file, as
Kafka's PEM keystores read it). Existing certificates valid for 30 more days and
naming every --hosts are kept. jutong dev and demo do this in --data-dir/tls.`

// runCerts: jutong certs.
func runCerts(_ context.Context, args []string, out, errOut io.Writer) error {
	fs := cmdflag.New("certs", certsDesc, errOut)
	dir := fs.EnvString("dir", "JUTONG_CERTS_DIR", "", "where the certificates are kept (required)")
	hosts := fs.EnvString("hosts", "JUTONG_CERTS_HOSTS", "", "names and addresses the server certificate is for, comma separated (localhost and the loopback addresses always)")
	gid := fs.Int("gid", -1, "a group allowed to read the server's key (0640, e.g. the Kafka image's 1000); the certificates, which are public, become 0644; -1: everything the owner's only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	f, err := tlsca.Ensure(*dir, splitList(*hosts)...)
	if err != nil {
		return err
	}
	if *gid >= 0 {
		for p, mode := range map[string]os.FileMode{*dir: 0o755, f.CA: 0o644, f.Cert: 0o644, f.Key: 0o640, f.Bundle: 0o640} {
			if err := os.Chown(p, -1, *gid); err != nil {
				return err
			}
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(out, "CA (trust it): %s\nserver: %s, %s (bundle %s)\nfor: localhost, 127.0.0.1, ::1 %s\n", f.CA, f.Cert, f.Key, f.Bundle, strings.Join(splitList(*hosts), ", "))
	return nil
}
