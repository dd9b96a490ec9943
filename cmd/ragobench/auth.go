package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/testpki"
	"github.com/rago-raft/rago/raftserver"
)

// How the nodes of a run authenticate each other (-auth), as a deployment
// would: every node, the client's included, gets the cluster secret or its
// own certificate from files.
const (
	authPlain  = "plain"  // no credentials: connection version 1
	authSecret = "secret" // a 32-byte cluster secret, HMAC challenge and response
	authTLS    = "tls"    // mutual TLS 1.3, ECDSA P-256 certificates
)

// Files in a credentials directory.
const (
	secretFile = "cluster.secret"
	caFile     = "ca.pem"
)

// credentials are the files a run's nodes authenticate with, in a
// directory of their own that remove deletes. The zero value and nil are
// plain: no credentials.
type credentials struct {
	mode string
	dir  string
}

// makeCredentials writes the credentials of mode for the nodes named ids
// into a new directory under parent: the secret, or a CA made for this run
// and one certificate and key per node, valid for 127.0.0.1 (the host of
// every node's name here) for a day.
func makeCredentials(mode, parent string, ids []string) (*credentials, error) {
	switch mode {
	case authPlain:
		return &credentials{mode: mode}, nil
	case authSecret, authTLS:
	default:
		return nil, fmt.Errorf("unknown -auth %q (plain, secret or tls)", mode)
	}
	dir, err := os.MkdirTemp(parent, "credentials")
	if err != nil {
		return nil, err
	}
	c := &credentials{mode: mode, dir: dir}
	if mode == authSecret {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret) // never fails (crypto/rand)
		err = os.WriteFile(filepath.Join(dir, secretFile), secret, 0o600)
	} else {
		err = writeCertificates(dir, ids, time.Now())
	}
	if err != nil {
		c.remove()
		return nil, err
	}
	return c, nil
}

// remove deletes the credentials' files.
func (c *credentials) remove() {
	if c != nil && c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// nodeArgs are the flags that give a node process its credentials.
func (c *credentials) nodeArgs(id string) []string {
	if c == nil || c.mode == authPlain {
		return nil
	}
	return []string{"-auth", c.mode, "-node-creds", c.dir, "-node-id", id}
}

// apply gives cfg the credentials of the node named id.
func (c *credentials) apply(cfg *raftserver.SystemConfig, id string) error {
	if c == nil {
		return nil
	}
	switch c.mode {
	case authPlain:
	case authSecret:
		secret, err := os.ReadFile(filepath.Join(c.dir, secretFile))
		if err != nil {
			return err
		}
		cfg.Node.ClusterSecret = secret
	case authTLS:
		cfg.Node.TLS = &actor.TLSConfig{
			CAFile:   filepath.Join(c.dir, caFile),
			CertFile: filepath.Join(c.dir, id+".pem"),
			KeyFile:  filepath.Join(c.dir, id+"-key.pem"),
		}
	default:
		return fmt.Errorf("unknown -auth %q (plain, secret or tls)", c.mode)
	}
	return nil
}

// writeCertificates makes a CA and, for each id, a certificate and key it
// signs (internal/testpki: both the server and the client key usage, as a
// node dials and accepts) with an IP SAN for 127.0.0.1; all PEM, keys
// PKCS #8.
func writeCertificates(dir string, ids []string, now time.Time) error {
	notBefore, notAfter := now.Add(-5*time.Minute), now.Add(24*time.Hour)
	ca, err := testpki.NewCA("ragobench CA", notBefore, notAfter)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, caFile), ca.CertPEM, 0o644); err != nil {
		return err
	}
	for _, id := range ids {
		c, err := ca.Issue([]string{"127.0.0.1"}, notBefore, notAfter)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, id+"-key.pem"), c.KeyPEM, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, id+".pem"), c.CertPEM, 0o644); err != nil {
			return err
		}
	}
	return nil
}
