package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/kvstore/internal/kv"
)

const certsHelp = `
Makes certificates to try mutual TLS between nodes: a CA, and for each node
of --nodes a certificate and key signed by it, valid for the node's host
(an IP SAN for an address, a DNS SAN for a name): the host of the node's
--raft address, which is what its peers check. Every certificate has both
the server and the client key usage, since a node dials and accepts; the
keys are ECDSA P-256.

	kvstore certs --dir certs --nodes n1=127.0.0.1,n2=127.0.0.1,n3=127.0.0.1
	kvstore serve --id n1 ... --tls-ca certs/ca.pem --tls-cert certs/n1.pem --tls-key certs/n1-key.pem

A CA already in --dir (ca.pem and ca-key.pem) is reused, so running the
command again issues fresh node certificates that the running nodes accept:
nodes read their certificate files again for every new connection. The
certificates are short-lived on purpose (--valid, --ca-valid): these are
for trying things out; keep a real CA's key off the nodes.`

// certsFiles are the names of the files certs writes in --dir.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

func runCerts(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("certs", stderr, certsHelp)
	dir := fs.String("dir", "", "`directory` to write the CA and the node certificates to (required)")
	nodes := fs.String("nodes", "", "the nodes as `id=host,...` where host is the host of the node's --raft address; a :port is ignored (required)")
	valid := fs.Duration("valid", 30*24*time.Hour, "how long the node certificates are valid")
	caValid := fs.Duration("ca-valid", 90*24*time.Hour, "how long a new CA is valid")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if *dir == "" || *nodes == "" {
		return cli.Usagef("--dir and --nodes are required")
	}
	if *valid <= 0 || *caValid <= 0 {
		return cli.Usagef("--valid %v and --ca-valid %v must be positive", *valid, *caValid)
	}
	hosts, err := parseCertNodes(*nodes)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	now := time.Now()
	ca, caKey, made, err := loadOrMakeCA(*dir, now, *caValid)
	if err != nil {
		return err
	}
	verb := "reused the CA in"
	if made {
		verb = "made a new CA in"
	}
	fmt.Fprintf(stdout, "%s %s (valid until %s)\n", verb, filepath.Join(*dir, caCertFile), ca.NotAfter.Format(time.DateOnly))
	for _, h := range hosts {
		notAfter := now.Add(*valid)
		if notAfter.After(ca.NotAfter) {
			// A certificate that outlives its CA would only seem to.
			notAfter = ca.NotAfter
		}
		certPEM, keyPEM, err := issueNodeCert(h, ca, caKey, now, notAfter)
		if err != nil {
			return err
		}
		certPath, keyPath := filepath.Join(*dir, h.id+".pem"), filepath.Join(*dir, h.id+"-key.pem")
		// The key first: a node that reloads between the two writes
		// finds a pair that does not match and keeps its old one.
		if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
			return err
		}
		if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s (%s, until %s): --tls-ca %s --tls-cert %s --tls-key %s\n",
			h.id, h.host, notAfter.Format(time.DateOnly), filepath.Join(*dir, caCertFile), certPath, keyPath)
	}
	return nil
}

// certHost is a node to issue a certificate for.
type certHost struct {
	id, host string
	ip       net.IP // nil for a DNS name
}

func parseCertNodes(s string) ([]certHost, error) {
	var out []certHost
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, host, ok := strings.Cut(part, "=")
		if !ok || host == "" {
			return nil, cli.Usagef("--nodes: %q is not id=host", part)
		}
		// The id names the files; the same rules as for a node's --id
		// keep it a plain file name.
		if err := kv.ValidateNodeID(id); err != nil {
			return nil, cli.Usagef("--nodes: %v", err)
		}
		if seen[id] {
			return nil, cli.Usagef("--nodes: %s appears twice", id)
		}
		seen[id] = true
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		ch := certHost{id: id, host: host, ip: net.ParseIP(host)}
		if ch.ip == nil && !validDNSName(host) {
			return nil, cli.Usagef("--nodes: %s's host %q is neither an IP address nor a DNS name", id, host)
		}
		out = append(out, ch)
	}
	if len(out) == 0 {
		return nil, cli.Usagef("--nodes names no node")
	}
	return out, nil
}

// validDNSName accepts host names of letters, digits, hyphens and dots.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// loadOrMakeCA returns the CA in dir, or makes one there.
func loadOrMakeCA(dir string, now time.Time, valid time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, bool, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, errCert := os.ReadFile(certPath)
	keyPEM, errKey := os.ReadFile(keyPath)
	switch {
	case errCert == nil && errKey == nil:
		ca, key, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, nil, false, fmt.Errorf("the CA in %s: %w (remove %s and %s to make a new one)", dir, err, certPath, keyPath)
		}
		if now.After(ca.NotAfter) {
			return nil, nil, false, fmt.Errorf("the CA in %s expired on %s: remove %s and %s to make a new one, then issue every node a new certificate",
				dir, ca.NotAfter.Format(time.DateOnly), certPath, keyPath)
		}
		return ca, key, false, nil
	case !errors.Is(errCert, os.ErrNotExist) && errCert != nil:
		return nil, nil, false, errCert
	case !errors.Is(errKey, os.ErrNotExist) && errKey != nil:
		return nil, nil, false, errKey
	case (errCert == nil) != (errKey == nil):
		return nil, nil, false, fmt.Errorf("%s holds only one of %s and %s: remove it to make a new CA", dir, caCertFile, caKeyFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"kvstore"}, CommonName: "kvstore test CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-5 * time.Minute), // tolerate clocks a little behind
		NotAfter:              now.Add(valid),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs node certificates only, no intermediates
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, false, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, false, err
	}
	if err := writeAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, false, err
	}
	if err := writeAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, false, err
	}
	return ca, key, true, nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("not PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, errors.New("the key is not the certificate's")
	}
	if !ca.IsCA {
		return nil, nil, errors.New("the certificate is not a CA")
	}
	return ca, key, nil
}

// issueNodeCert makes a node's certificate and key, PEM.
func issueNodeCert(h certHost, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"kvstore"}, CommonName: h.id},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// A node is a TLS server when a peer dials it and a client when it
		// dials: rago checks both usages.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if h.ip != nil {
		tmpl.IPAddresses = []net.IP{h.ip}
	} else {
		tmpl.DNSNames = []string{h.host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// serial returns a random 128-bit serial number, as CAs do: unique
// without keeping count.
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return n
}

// writeAtomic writes a file by renaming a complete one over it, so that
// a node reloading its credentials never reads half a file.
func writeAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
