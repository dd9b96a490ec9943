package main

import (
	"crypto/x509"
	"flag"
	"log/slog"
	"os"

	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/examples/kvstore/internal/client"
	"github.com/rago-raft/rago/examples/kvstore/internal/node"
)

// securityFlags are the credentials of serve, join, restore and demo: the
// flags every example shares (creds.Flags), applied to a kvstore node.
type securityFlags struct{ creds.Flags }

func (s *securityFlags) register(fs *flag.FlagSet) {
	s.Register(fs, "writes, membership changes, /backup and /debug/pprof/")
}

// check checks the combination of flags, before any file is read.
func (s *securityFlags) check() error { return s.Check("kvstore") }

// apply checks the flags, reads the files they name and sets the
// security fields of cfg. Mistakes in the flags or files are usage errors
// (exit status 2); a certificate that does not verify is reported when
// the node starts.
func (s *securityFlags) apply(cfg *node.Config, logger *slog.Logger) error {
	c, err := s.Load("kvstore", logger)
	if err != nil {
		return err
	}
	cfg.Insecure, cfg.ClusterSecret, cfg.TLS, cfg.HTTPS, cfg.APIToken = c.Insecure, c.ClusterSecret, c.TLS, c.HTTPS, c.APIToken
	return nil
}

// args returns the flags as a node's command line takes them, for the
// demo to pass on.
func (s *securityFlags) args() []string { return s.Args() }

// clientOptions returns what a client of the cluster needs: the CA that
// HTTPS nodes' certificates chain to, and the token.
func (s *securityFlags) clientOptions(logger *slog.Logger) (client.Options, error) {
	return loadClientOptions(s.TLSCA, s.TokenFile, logger)
}

func loadClientOptions(caFile, tokenFile string, logger *slog.Logger) (client.Options, error) {
	var o client.Options
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return o, cli.Usagef("--tls-ca: %v", err)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			return o, cli.Usagef("--tls-ca %s holds no PEM certificate", caFile)
		}
	}
	if tokenFile != "" {
		token, err := creds.ReadToken(tokenFile, logger)
		if err != nil {
			return o, err
		}
		o.Token = token
	}
	return o, nil
}
