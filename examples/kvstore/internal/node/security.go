package node

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
)

// checkSecurity checks the security settings of a config; fill calls it.
// The messages name the command line flags, as the rest of fill does.
func (c *Config) checkSecurity() error {
	hasCreds := c.ClusterSecret != nil || c.TLS != nil
	switch {
	case !hasCreds && !c.Insecure:
		return fmt.Errorf("%w: no credentials for the Raft port: give --secret-file, or --tls-ca, --tls-cert and --tls-key, or --insecure to accept anyone who can reach %s", ErrConfig, c.RaftAddr)
	case hasCreds && c.Insecure:
		return fmt.Errorf("%w: --insecure contradicts the credentials given (--secret-file or --tls-*): drop one", ErrConfig)
	case c.ClusterSecret != nil && len(c.ClusterSecret) < actor.MinClusterSecretBytes:
		return fmt.Errorf("%w: the cluster secret has %d bytes, rago needs at least %d", ErrConfig, len(c.ClusterSecret), actor.MinClusterSecretBytes)
	case c.HTTPS && c.TLS == nil:
		return fmt.Errorf("%w: HTTPS uses the node's TLS certificate: give --tls-ca, --tls-cert and --tls-key", ErrConfig)
	case c.HTTPS && (c.TLS.CertFile == "") == (len(c.TLS.CertPEM) == 0):
		return fmt.Errorf("%w: HTTPS needs exactly one of the TLS certificate files and inline PEM", ErrConfig)
	}
	if c.APIToken != "" {
		if err := creds.CheckAPIToken(c.APIToken); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if c.AdvertiseHTTP != "" && c.HTTPS && strings.HasPrefix(c.AdvertiseHTTP, "http://") {
		return fmt.Errorf("%w: the node serves HTTPS, but the advertised address %q says http://", ErrConfig, c.AdvertiseHTTP)
	}
	return nil
}

// raftAuth names how the node's Raft connections are authenticated, for
// /status and the log.
func (c *Config) raftAuth() string { return creds.RaftAuth(c.ClusterSecret, c.TLS) }

// needsToken reports whether a request needs the API token (when the node
// has one): everything that is not a plain read, and the admin endpoints
// even when read. A backup is a copy of every value, and the profiler
// costs CPU and shows the command line; neither is for every reader.
func needsToken(method, path string) bool {
	switch {
	case strings.HasPrefix(path, "/cluster/members"), path == "/backup", strings.HasPrefix(path, "/debug/pprof/"):
		return true
	}
	return method != http.MethodGet && method != http.MethodHead
}

// authorized reports whether r may go on, and answers 401 if not (the
// token is compared as creds.Token does, in constant time).
func (n *Node) authorized(w http.ResponseWriter, r *http.Request, path string) bool {
	if !n.token.Set() || !needsToken(r.Method, path) {
		return true
	}
	ok, given := n.token.Check(r.Header.Get("Authorization"))
	if ok {
		return true
	}
	msg := "this node needs an API token for writes and admin endpoints: send the header 'Authorization: Bearer TOKEN' (kvstore: --api-token-file FILE)"
	if given {
		msg = "the API token does not match this node's (--api-token-file)"
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="kvstore"`)
	n.fail(w, &api.Error{Status: http.StatusUnauthorized, Code: api.CodeUnauthorized, Message: msg})
	return false
}
