// Package creds holds what the example programs share about credentials:
// the command line flags of a node's cluster secret, mutual TLS and API
// token, the checks of the files they name, the API token's check and
// comparison, and the HTTPS certificate that follows its files.
//
// Every example refuses to start a node whose Raft port would accept
// anyone unless it is asked for by name (--insecure): the library's default
// is no credentials, and an open port must be a choice someone made.
package creds

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/examples/internal/cli"
)

// UsageError is a mistake in the command line or in the files it names:
// the programs print it with their usage hint and exit with status 2. It
// is the programs' own kind of usage mistake, so that they need not
// translate these.
type UsageError = cli.UsageError

func usage(format string, args ...any) error { return cli.Usagef(format, args...) }

// Flags are the credential flags of a node command (and of a demo, which
// passes them on to its nodes).
type Flags struct {
	SecretFile             string
	TLSCA, TLSCert, TLSKey string
	TokenFile              string
	Insecure, InsecureHTTP bool
}

// Register adds the flags to fs. program names the command in hints
// ("kvstore"); guards says what the API token guards, for the help text.
func (s *Flags) Register(fs *flag.FlagSet, guards string) {
	fs.StringVar(&s.SecretFile, "secret-file", "", "`FILE` holding the cluster secret, the same on every node: Raft connections prove they know it (at least 16 bytes; not readable by other users)")
	fs.StringVar(&s.TLSCA, "tls-ca", "", "`FILE` of the CA certificates (PEM) that sign node certificates: Raft connections become mutual TLS (with --tls-cert and --tls-key)")
	fs.StringVar(&s.TLSCert, "tls-cert", "", "`FILE` of this node's certificate (PEM), valid for the host of --raft; also serves HTTPS on --http")
	fs.StringVar(&s.TLSKey, "tls-key", "", "`FILE` of this node's private key (PEM; not readable by other users)")
	fs.StringVar(&s.TokenFile, "api-token-file", "", "`FILE` holding an API token: "+guards+" then need 'Authorization: Bearer <token>'")
	fs.BoolVar(&s.Insecure, "insecure", false, "run without --secret-file or --tls-*: anyone who can reach the Raft port can act as a member (trusted networks only)")
	fs.BoolVar(&s.InsecureHTTP, "insecure-http", false, "with --tls-*, serve plain HTTP on --http instead of HTTPS (behind a TLS proxy, say)")
}

// NoCredentials is the refusal of a node without credentials: it says
// what to pass, including how to make a secret. program names the command
// whose certs subcommand makes certificates.
func NoCredentials(program string) string {
	return `no credentials for the Raft port: anyone who can reach it could act as a member of the cluster.
Pass one of:
  --secret-file FILE        a random secret, the same file on every node; make one with
                              (umask 077; head -c 32 /dev/urandom | base64 > FILE)
  --tls-ca FILE --tls-cert FILE --tls-key FILE
                            mutual TLS; '` + program + ` certs -h' makes certificates to try it
  --insecure                no authentication, for a network where every host is trusted`
}

// HasTLS reports whether any TLS flag was given.
func (s *Flags) HasTLS() bool { return s.TLSCA != "" || s.TLSCert != "" || s.TLSKey != "" }

// Check checks the combination of flags, before any file is read; program
// names the command in hints.
func (s *Flags) Check(program string) error {
	if s.HasTLS() {
		var missing []string
		for _, f := range []struct{ name, v string }{{"--tls-ca", s.TLSCA}, {"--tls-cert", s.TLSCert}, {"--tls-key", s.TLSKey}} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			return usage("--tls-ca, --tls-cert and --tls-key go together: %v missing", missing)
		}
	}
	switch {
	case s.Insecure && (s.SecretFile != "" || s.HasTLS()):
		return usage("--insecure turns authentication off, but --secret-file or --tls-* turn it on: drop one")
	case !s.Insecure && s.SecretFile == "" && !s.HasTLS():
		return usage("%s", NoCredentials(program))
	case s.InsecureHTTP && !s.HasTLS():
		return usage("--insecure-http goes with --tls-*: without them the HTTP API is plain HTTP already")
	}
	return nil
}

// Credentials are what the flags name, read and checked.
type Credentials struct {
	// ClusterSecret and TLS go to the node's actor.Config.
	ClusterSecret []byte
	TLS           *actor.TLSConfig
	// HTTPS: serve the HTTP API over TLS with the node's certificate.
	HTTPS bool
	// Insecure: no credentials, by request.
	Insecure bool
	// APIToken guards writes; "" for none.
	APIToken string
}

// Load checks the flags and reads the files they name. Mistakes in the
// flags or files are UsageErrors; a certificate that does not verify is
// reported when the node starts.
func (s *Flags) Load(program string, logger *slog.Logger) (Credentials, error) {
	var c Credentials
	if err := s.Check(program); err != nil {
		return c, err
	}
	c.Insecure = s.Insecure
	if s.SecretFile != "" {
		secret, err := ReadSecretFile("--secret-file", s.SecretFile, logger)
		if err != nil {
			return c, err
		}
		if len(secret) < actor.MinClusterSecretBytes {
			return c, usage("--secret-file %s holds %d bytes; use at least %d random ones: (umask 077; head -c 32 /dev/urandom | base64 > %s)",
				s.SecretFile, len(secret), actor.MinClusterSecretBytes, s.SecretFile)
		}
		c.ClusterSecret = secret
	}
	if s.HasTLS() {
		for _, f := range []struct{ name, path string }{{"--tls-ca", s.TLSCA}, {"--tls-cert", s.TLSCert}} {
			if _, err := os.Stat(f.path); err != nil {
				return c, usage("%s: %v", f.name, err)
			}
		}
		if err := CheckPrivate("--tls-key", s.TLSKey, logger); err != nil {
			return c, err
		}
		c.TLS = &actor.TLSConfig{CAFile: s.TLSCA, CertFile: s.TLSCert, KeyFile: s.TLSKey}
		c.HTTPS = !s.InsecureHTTP
	}
	if s.TokenFile != "" {
		token, err := ReadToken(s.TokenFile, logger)
		if err != nil {
			return c, err
		}
		c.APIToken = token
	}
	return c, nil
}

// Args returns the flags as a node's command line takes them, for a demo
// to pass on.
func (s *Flags) Args() []string {
	var out []string
	add := func(name, v string) {
		if v != "" {
			out = append(out, name, v)
		}
	}
	add("--secret-file", s.SecretFile)
	add("--tls-ca", s.TLSCA)
	add("--tls-cert", s.TLSCert)
	add("--tls-key", s.TLSKey)
	add("--api-token-file", s.TokenFile)
	if s.Insecure {
		out = append(out, "--insecure")
	}
	if s.InsecureHTTP {
		out = append(out, "--insecure-http")
	}
	return out
}

// RaftAuth names how a node's Raft connections are authenticated, for
// status answers and logs.
func RaftAuth(secret []byte, tls *actor.TLSConfig) string {
	switch {
	case tls != nil && secret != nil:
		return "tls+secret"
	case tls != nil:
		return "tls"
	case secret != nil:
		return "secret"
	}
	return "none"
}

// ReadToken reads and checks an API token file.
func ReadToken(path string, logger *slog.Logger) (string, error) {
	b, err := ReadSecretFile("--api-token-file", path, logger)
	if err != nil {
		return "", err
	}
	if err := CheckAPIToken(string(b)); err != nil {
		return "", usage("--api-token-file %s: %v; make one with: (umask 077; head -c 24 /dev/urandom | base64 > %s)", path, err, path)
	}
	return string(b), nil
}

// ReadSecretFile reads a file of secret bytes, refusing one that every
// user may read, and drops trailing whitespace, so that a file written by
// echo or an editor (a final newline) holds the same secret as one
// without it.
func ReadSecretFile(flagName, path string, logger *slog.Logger) ([]byte, error) {
	if err := CheckPrivate(flagName, path, logger); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usage("%s: %v", flagName, err)
	}
	return bytes.TrimRight(b, " \t\r\n"), nil
}

// ErrWorldReadable: a file of secrets that every user of the machine can
// read.
var ErrWorldReadable = errors.New("open to every user")

// CheckPrivate refuses a file of secrets that other users can read or
// write (its secret is not one), and warns about one that its group can
// read. Windows has no such permission bits; nothing is checked there.
func CheckPrivate(flagName, path string, logger *slog.Logger) error {
	st, err := os.Stat(path)
	if err != nil {
		return usage("%s: %v", flagName, err)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	switch perm := st.Mode().Perm(); {
	case perm&0o007 != 0:
		return usage("%s %s is %v (mode %04o): chmod 600 %s", flagName, path, ErrWorldReadable, perm, path)
	case perm&0o070 != 0 && logger != nil:
		logger.Warn("a file of secrets is open to its group; chmod 600 it unless that is meant", "flag", flagName, "file", path, "mode", fmt.Sprintf("%04o", perm))
	}
	return nil
}
