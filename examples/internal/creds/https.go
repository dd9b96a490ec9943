package creds

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/rago-raft/rago/actor"
)

// ErrHTTPSCert: the node's certificate does not load for HTTPS.
var ErrHTTPSCert = errors.New("HTTPS certificate")

// HTTPSCert serves a node's certificate for HTTPS from the same files
// as its Raft port. Like rago's transport, it picks up replaced files on
// new connections; it reads them at most once a second rather than on
// every handshake, and keeps the last good pair when new files do not
// load.
type HTTPSCert struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cur     *tls.Certificate
	src     [2][]byte // what cur was parsed from
	checked time.Time
	lastErr string // the last reload error logged, to log each once
}

// NewHTTPSCert loads the certificate and key that cfg names (files or
// inline PEM), failing if they do not load.
func NewHTTPSCert(cfg *actor.TLSConfig, log *slog.Logger) (*HTTPSCert, error) {
	h := &HTTPSCert{certFile: cfg.CertFile, keyFile: cfg.KeyFile, log: log}
	if cfg.CertFile == "" {
		cert, err := tls.X509KeyPair(cfg.CertPEM, cfg.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrHTTPSCert, err)
		}
		h.cur = &cert
		return h, nil
	}
	if err := h.reloadLocked(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHTTPSCert, err)
	}
	h.checked = time.Now()
	return h, nil
}

// Get is the server's tls.Config.GetCertificate.
func (h *HTTPSCert) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
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

func (h *HTTPSCert) reloadLocked() error {
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

// WarnUncovered logs when the certificate does not cover the host of the
// node's HTTPS address: clients would refuse it. It is a warning, not an
// error, because a proxy or a client that pins the certificate may still
// work.
func (h *HTTPSCert) WarnUncovered(advertised string, log *slog.Logger) {
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

// IsLoopback reports whether a listener's address is on the loopback
// interface only, where nobody else on the network can listen in.
func IsLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
