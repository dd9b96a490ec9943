package node

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
)

// MinAPITokenBytes is the shortest Config.APIToken accepted: a token is
// compared in constant time, but nothing slows down guessing, so it must
// be long and random enough that guessing is hopeless.
const MinAPITokenBytes = 16

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
		if err := CheckAPIToken(c.APIToken); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if c.AdvertiseHTTP != "" && c.HTTPS && strings.HasPrefix(c.AdvertiseHTTP, "http://") {
		return fmt.Errorf("%w: the node serves HTTPS, but the advertised address %q says http://", ErrConfig, c.AdvertiseHTTP)
	}
	return nil
}

// CheckAPIToken says what is wrong with an API token, if anything. It
// must fit in an HTTP header as it is, so it is printable ASCII without
// spaces.
func CheckAPIToken(token string) error {
	if len(token) < MinAPITokenBytes {
		return fmt.Errorf("the API token has %d characters, use at least %d random ones", len(token), MinAPITokenBytes)
	}
	for i := 0; i < len(token); i++ {
		if b := token[i]; b <= ' ' || b > '~' {
			return fmt.Errorf("the API token holds a character that cannot go in an HTTP header (byte %d is 0x%02x): use letters, digits and punctuation", i, b)
		}
	}
	return nil
}

// raftAuth names how the node's Raft connections are authenticated, for
// /status and the log.
func (c *Config) raftAuth() string {
	switch {
	case c.TLS != nil && c.ClusterSecret != nil:
		return "tls+secret"
	case c.TLS != nil:
		return "tls"
	case c.ClusterSecret != nil:
		return "secret"
	}
	return "none"
}

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

// authorized reports whether r may go on, and answers 401 if not. The
// token is compared as a SHA-256 digest: subtle.ConstantTimeCompare
// returns at once on a length mismatch, which would tell a guesser the
// token's length; two digests always have the same one.
func (n *Node) authorized(w http.ResponseWriter, r *http.Request, path string) bool {
	if n.tokenDigest == nil || !needsToken(r.Method, path) {
		return true
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	msg := "this node needs an API token for writes and admin endpoints: send the header 'Authorization: Bearer TOKEN' (kvstore: --api-token-file FILE)"
	if strings.EqualFold(scheme, "Bearer") && token != "" {
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if subtle.ConstantTimeCompare(got[:], n.tokenDigest) == 1 {
			return true
		}
		msg = "the API token does not match this node's (--api-token-file)"
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="kvstore"`)
	n.fail(w, &api.Error{Status: http.StatusUnauthorized, Code: api.CodeUnauthorized, Message: msg})
	return false
}

// httpsCert serves the node's certificate for HTTPS from the same files
// as its Raft port. Like rago's transport, it picks up replaced files on
// new connections; it reads them at most once a second rather than on
// every handshake, and keeps the last good pair when new files do not
// load.
type httpsCert struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cur     *tls.Certificate
	src     [2][]byte // what cur was parsed from
	checked time.Time
	lastErr string // the last reload error logged, to log each once
}

func newHTTPSCert(cfg *actor.TLSConfig, log *slog.Logger) (*httpsCert, error) {
	h := &httpsCert{certFile: cfg.CertFile, keyFile: cfg.KeyFile, log: log}
	if cfg.CertFile == "" {
		cert, err := tls.X509KeyPair(cfg.CertPEM, cfg.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: HTTPS certificate: %w", ErrConfig, err)
		}
		h.cur = &cert
		return h, nil
	}
	if err := h.reloadLocked(); err != nil {
		return nil, fmt.Errorf("%w: HTTPS certificate: %w", ErrConfig, err)
	}
	h.checked = time.Now()
	return h, nil
}

// get is the server's tls.Config.GetCertificate.
func (h *httpsCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.certFile != "" && time.Since(h.checked) >= time.Second {
		h.checked = time.Now()
		if err := h.reloadLocked(); err != nil && err.Error() != h.lastErr {
			h.lastErr = err.Error()
			h.log.Warn("kept the previous HTTPS certificate", "err", err)
		}
	}
	return h.cur, nil
}

func (h *httpsCert) reloadLocked() error {
	var src [2][]byte
	for i, f := range []string{h.certFile, h.keyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		src[i] = b
	}
	if h.cur != nil && bytes.Equal(src[0], h.src[0]) && bytes.Equal(src[1], h.src[1]) {
		return nil
	}
	cert, err := tls.X509KeyPair(src[0], src[1])
	if err != nil {
		return err
	}
	h.cur, h.src, h.lastErr = &cert, src, ""
	return nil
}

// warnUncovered logs when the certificate does not cover the host of the
// node's HTTPS address: clients would refuse it. It is a warning, not an
// error, because a proxy or a client that pins the certificate may still
// work.
func (h *httpsCert) warnUncovered(advertised string, log *slog.Logger) {
	u, err := url.Parse(advertised)
	if err != nil {
		return
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return // a wildcard listener: the host clients use is unknown here
	}
	h.mu.Lock()
	leaf := h.cur.Leaf
	h.mu.Unlock()
	if leaf == nil {
		return
	}
	if err := leaf.VerifyHostname(host); err != nil {
		log.Warn("the TLS certificate does not cover the host of this node's HTTPS address; clients will refuse it (add the host to the certificate, or set --advertise-http)",
			"https", advertised, "err", err)
	}
}

// isLoopback reports whether a listener's address is on the loopback
// interface only, where nobody else on the network can listen in.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
