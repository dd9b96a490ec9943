package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/examples/kvstore/internal/client"
	"github.com/rago-raft/rago/examples/kvstore/internal/node"
)

// securityFlags are the credentials of serve, join, restore and demo.
type securityFlags struct {
	secretFile             string
	tlsCA, tlsCert, tlsKey string
	tokenFile              string
	insecure, insecureHTTP bool
}

func (s *securityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.secretFile, "secret-file", "", "`FILE` holding the cluster secret, the same on every node: Raft connections prove they know it (at least 16 bytes; not readable by other users)")
	fs.StringVar(&s.tlsCA, "tls-ca", "", "`FILE` of the CA certificates (PEM) that sign node certificates: Raft connections become mutual TLS (with --tls-cert and --tls-key)")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "`FILE` of this node's certificate (PEM), valid for the host of --raft; also serves HTTPS on --http")
	fs.StringVar(&s.tlsKey, "tls-key", "", "`FILE` of this node's private key (PEM; not readable by other users)")
	fs.StringVar(&s.tokenFile, "api-token-file", "", "`FILE` holding an API token: writes, membership changes, /backup and /debug/pprof/ then need 'Authorization: Bearer <token>'")
	fs.BoolVar(&s.insecure, "insecure", false, "run without --secret-file or --tls-*: anyone who can reach the Raft port can act as a member (trusted networks only)")
	fs.BoolVar(&s.insecureHTTP, "insecure-http", false, "with --tls-*, serve plain HTTP on --http instead of HTTPS (behind a TLS proxy, say)")
}

// noCredentials is the refusal of a node without credentials: it says
// what to pass, including how to make a secret.
const noCredentials = `no credentials for the Raft port: anyone who can reach it could act as a member of the cluster.
Pass one of:
  --secret-file FILE        a random secret, the same file on every node; make one with
                              (umask 077; head -c 32 /dev/urandom | base64 > FILE)
  --tls-ca FILE --tls-cert FILE --tls-key FILE
                            mutual TLS; 'kvstore certs -h' makes certificates to try it
  --insecure                no authentication, for a network where every host is trusted`

// hasTLS reports whether any TLS flag was given.
func (s *securityFlags) hasTLS() bool { return s.tlsCA != "" || s.tlsCert != "" || s.tlsKey != "" }

// check checks the combination of flags, before any file is read.
func (s *securityFlags) check() error {
	if s.hasTLS() {
		var missing []string
		for _, f := range []struct{ name, v string }{{"--tls-ca", s.tlsCA}, {"--tls-cert", s.tlsCert}, {"--tls-key", s.tlsKey}} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			return usageErr("--tls-ca, --tls-cert and --tls-key go together: %v missing", missing)
		}
	}
	switch {
	case s.insecure && (s.secretFile != "" || s.hasTLS()):
		return usageErr("--insecure turns authentication off, but --secret-file or --tls-* turn it on: drop one")
	case !s.insecure && s.secretFile == "" && !s.hasTLS():
		return usageErr("%s", noCredentials)
	case s.insecureHTTP && !s.hasTLS():
		return usageErr("--insecure-http goes with --tls-*: without them the HTTP API is plain HTTP already")
	}
	return nil
}

// apply checks the flags, reads the files they name and sets the
// security fields of cfg. Mistakes in the flags or files are usage errors
// (exit status 2); a certificate that does not verify is reported when
// the node starts.
func (s *securityFlags) apply(cfg *node.Config, logger *slog.Logger) error {
	if err := s.check(); err != nil {
		return err
	}
	cfg.Insecure = s.insecure
	if s.secretFile != "" {
		secret, err := readSecretFile("--secret-file", s.secretFile, logger)
		if err != nil {
			return err
		}
		if len(secret) < actor.MinClusterSecretBytes {
			return usageErr("--secret-file %s holds %d bytes; use at least %d random ones: (umask 077; head -c 32 /dev/urandom | base64 > %s)",
				s.secretFile, len(secret), actor.MinClusterSecretBytes, s.secretFile)
		}
		cfg.ClusterSecret = secret
	}
	if s.hasTLS() {
		for _, f := range []struct{ name, path string }{{"--tls-ca", s.tlsCA}, {"--tls-cert", s.tlsCert}} {
			if _, err := os.Stat(f.path); err != nil {
				return usageErr("%s: %v", f.name, err)
			}
		}
		if err := checkPrivate("--tls-key", s.tlsKey, logger); err != nil {
			return err
		}
		cfg.TLS = &actor.TLSConfig{CAFile: s.tlsCA, CertFile: s.tlsCert, KeyFile: s.tlsKey}
		cfg.HTTPS = !s.insecureHTTP
	}
	if s.tokenFile != "" {
		token, err := readToken(s.tokenFile, logger)
		if err != nil {
			return err
		}
		cfg.APIToken = token
	}
	return nil
}

// args returns the flags as a node's command line takes them, for the
// demo to pass on.
func (s *securityFlags) args() []string {
	var out []string
	add := func(name, v string) {
		if v != "" {
			out = append(out, name, v)
		}
	}
	add("--secret-file", s.secretFile)
	add("--tls-ca", s.tlsCA)
	add("--tls-cert", s.tlsCert)
	add("--tls-key", s.tlsKey)
	add("--api-token-file", s.tokenFile)
	if s.insecure {
		out = append(out, "--insecure")
	}
	if s.insecureHTTP {
		out = append(out, "--insecure-http")
	}
	return out
}

// clientOptions returns what a client of the cluster needs: the CA that
// HTTPS nodes' certificates chain to, and the token.
func (s *securityFlags) clientOptions(logger *slog.Logger) (client.Options, error) {
	return loadClientOptions(s.tlsCA, s.tokenFile, logger)
}

func loadClientOptions(caFile, tokenFile string, logger *slog.Logger) (client.Options, error) {
	var o client.Options
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return o, usageErr("--tls-ca: %v", err)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			return o, usageErr("--tls-ca %s holds no PEM certificate", caFile)
		}
	}
	if tokenFile != "" {
		token, err := readToken(tokenFile, logger)
		if err != nil {
			return o, err
		}
		o.Token = token
	}
	return o, nil
}

// readToken reads and checks an API token file.
func readToken(path string, logger *slog.Logger) (string, error) {
	b, err := readSecretFile("--api-token-file", path, logger)
	if err != nil {
		return "", err
	}
	if err := node.CheckAPIToken(string(b)); err != nil {
		return "", usageErr("--api-token-file %s: %v; make one with: (umask 077; head -c 24 /dev/urandom | base64 > %s)", path, err, path)
	}
	return string(b), nil
}

// readSecretFile reads a file of secret bytes, refusing one that every
// user may read, and drops trailing whitespace, so that a file written by
// echo or an editor (a final newline) holds the same secret as one
// without it.
func readSecretFile(flagName, path string, logger *slog.Logger) ([]byte, error) {
	if err := checkPrivate(flagName, path, logger); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErr("%s: %v", flagName, err)
	}
	return bytes.TrimRight(b, " \t\r\n"), nil
}

// errWorldReadable: a file of secrets that every user of the machine can
// read.
var errWorldReadable = errors.New("open to every user")

// checkPrivate refuses a file of secrets that other users can read or
// write (its secret is not one), and warns about one that its group can
// read. Windows has no such permission bits; nothing is checked there.
func checkPrivate(flagName, path string, logger *slog.Logger) error {
	st, err := os.Stat(path)
	if err != nil {
		return usageErr("%s: %v", flagName, err)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	switch perm := st.Mode().Perm(); {
	case perm&0o007 != 0:
		return usageErr("%s %s is %v (mode %04o): chmod 600 %s", flagName, path, errWorldReadable, perm, path)
	case perm&0o070 != 0 && logger != nil:
		logger.Warn("a file of secrets is open to its group; chmod 600 it unless that is meant", "flag", flagName, "file", path, "mode", fmt.Sprintf("%04o", perm))
	}
	return nil
}
