// Package tlsca makes the certificates a bus on one machine serves TLS
// with (jutong dev and demo): a private certificate authority kept in the
// data directory, and a server certificate it signs for the loopback
// addresses and the host's name. Clients trust the CA's certificate
// (ca.pem), which is public and may be copied to them; every file stays
// its owner's alone (0600 in a 0700 directory). It also loads certificates given by file (jutong serve).
package tlsca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files are a server's certificate and key, and the CA that signed it.
// Bundle holds the key, the certificate and the CA's in one PEM file, as
// Kafka's PEM keystores want them.
type Files struct{ CA, Cert, Key, Bundle string }

// Ensure returns the certificates in dir, making them when missing, when
// the server certificate expires within 30 days or does not name every one
// of hosts (besides localhost, the host's name and the loopback addresses).
func Ensure(dir string, hosts ...string) (Files, error) {
	f := Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem"),
		Bundle: filepath.Join(dir, "server-bundle.pem")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	if fresh(f.Cert, hosts) && exists(f.CA) && exists(f.Key) && exists(f.Bundle) {
		return f, nil
	}
	caKeyPath := filepath.Join(dir, "ca-key.pem")
	ca, caKey, err := loadCA(f.CA, caKeyPath)
	if err != nil {
		if ca, caKey, err = newCA(f.CA, caKeyPath); err != nil {
			return f, err
		}
	}
	return f, newServer(f, ca, caKey, hosts)
}

// Server is a server's TLS configuration from its certificate and key.
func Server(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Client is a client's TLS configuration trusting the CA in caFile.
func Client(caFile string) (*tls.Config, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls: no certificate in %s", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// fresh says whether the certificate in path is valid for 30 more days
// and names every one of hosts.
func fresh(path string, hosts []string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return false
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || time.Until(c.NotAfter) < 30*24*time.Hour {
		return false
	}
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func loadCA(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cblk, kblk := pemBlock(cb), pemBlock(kb)
	if cblk == nil || kblk == nil {
		return nil, nil, errors.New("tls: unreadable CA files")
	}
	ca, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	key, ok := parsed.(*ecdsa.PrivateKey)
	if err != nil || !ok || time.Until(ca.NotAfter) < 60*24*time.Hour {
		return nil, nil, errors.New("tls: CA unusable or expiring")
	}
	return ca, key, nil
}

func pemBlock(b []byte) *pem.Block { blk, _ := pem.Decode(b); return blk }

func newCA(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "Jutong local CA", Organization: []string{"Jutong"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustMarshal(key)})); err != nil {
		return nil, nil, err
	}
	return ca, key, writePEM(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func newServer(f Files, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			names = append(names, h)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "jutong", Organization: []string{"Jutong"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: names, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustMarshal(key)})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	if err := writePEM(f.Key, keyPEM); err != nil {
		return err
	}
	if err := writePEM(f.Bundle, slices.Concat(keyPEM, certPEM, caPEM)); err != nil {
		return err
	}
	return writePEM(f.Cert, slices.Concat(certPEM, caPEM))
}

// mustMarshal is k in PKCS #8 (which Go, Kafka's PEM keystores and
// librdkafka all read).
func mustMarshal(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return b
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// writePEM writes PEM data atomically, its owner's alone.
func writePEM(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
