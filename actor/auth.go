package actor

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rago-raft/rago/internal/wire"
)

// Authentication happens when a connection opens, before any frame is
// read. All of this is wire format.
//
//	preamble  = "RAGO" version:u8
//	  version 1: frames follow at once; nobody is authenticated. A node
//	             without credentials sends and accepts only this.
//	  version 2: authenticated; a node with credentials sends and accepts
//	             only this:
//	mode      = flags:u8                       dialer -> acceptor, clear text
//	              bit 0: TLS, bit 1: cluster secret; must equal the
//	              acceptor's own, or it closes the connection
//	[TLS 1.3 handshake, the dialer as client, both sides with certificates]
//	hello     = len:u16 dialer:string nonceD:[32]u8           dialer -> acceptor
//	challenge = len:u16 acceptor:string nonceA:[32]u8 macA:bytes  acceptor -> dialer
//	proof     = len:u16 macD:bytes                              dialer -> acceptor
//	frames as in version 1
//
// dialer and acceptor are the node names; the dialer checks that acceptor
// is the name it dialled, and with TLS the acceptor checks that the
// client certificate is valid for the host of dialer. Each connection's
// frames must then carry dialer as their source. With a secret, macA and
// macD are HMAC-SHA256(secret, label || transcript), with the label
// "rago auth v2 acceptor" or "rago auth v2 dialer" and
//
//	transcript = mode dialer:string acceptor:string nonceD nonceA binding:bytes
//
// where binding is 32 bytes of the TLS exporter ("EXPORTER-rago-auth")
// with TLS and empty without. Without a secret macA and macD are empty.
// The secret never travels; fresh nonces on both sides make a recorded
// handshake useless on another connection; the labels keep one side's
// answer from serving as the other's; the exporter ties the proof to
// this TLS session.
const (
	connVersionPlain = 1
	connVersionAuth  = 2

	modeTLS    = 1 << 0
	modeSecret = 1 << 1

	authNonceBytes = 32
	// authMaxMessage bounds one handshake message: a name (at most
	// maxAuthName), a nonce and a MAC fit with room to spare.
	authMaxMessage = 2048
	maxAuthName    = 1024
	// MinClusterSecretBytes is the shortest Config.ClusterSecret accepted.
	MinClusterSecretBytes = 16

	authLabelDialer   = "rago auth v2 dialer"
	authLabelAcceptor = "rago auth v2 acceptor"
	authExporterLabel = "EXPORTER-rago-auth"
)

// preambleAuth opens an authenticated connection; the mode byte follows.
var preambleAuth = [5]byte{'R', 'A', 'G', 'O', connVersionAuth}

// TLSConfig gives a node the certificates for mutual TLS between nodes
// (Config.TLS). Every node presents a certificate valid for the host of
// its name (an IP SAN for "10.0.0.5:7001", a DNS SAN for
// "node1.example:7001"), signed by one of the certificate authorities
// every node trusts, with both the server and the client extended key
// usage (a node both dials and accepts). Give each item either as a file
// or inline as PEM; files are read again whenever a connection opens and
// a change takes effect from that connection on (see Node.ReloadTLS).
// Only TLS 1.3 is spoken.
type TLSConfig struct {
	// CAFile is a PEM file of the certificate authorities that sign node
	// certificates: the only ones a peer's certificate may chain to.
	CAFile string
	// CAPEM gives the authorities inline, instead of CAFile.
	CAPEM []byte
	// CertFile and KeyFile are this node's certificate (with any
	// intermediates after it) and private key, PEM.
	CertFile, KeyFile string
	// CertPEM and KeyPEM give them inline, instead of the files.
	CertPEM, KeyPEM []byte
}

func (c *TLSConfig) validate() error {
	switch {
	case (c.CAFile == "") == (len(c.CAPEM) == 0):
		return fmt.Errorf("%w: TLS needs exactly one of CAFile and CAPEM", ErrInvalidConfig)
	case (c.CertFile == "") != (c.KeyFile == ""):
		return fmt.Errorf("%w: TLS CertFile %q and KeyFile %q go together", ErrInvalidConfig, c.CertFile, c.KeyFile)
	case (len(c.CertPEM) == 0) != (len(c.KeyPEM) == 0):
		return fmt.Errorf("%w: TLS CertPEM and KeyPEM go together", ErrInvalidConfig)
	case (c.CertFile == "") == (len(c.CertPEM) == 0):
		return fmt.Errorf("%w: TLS needs exactly one of CertFile/KeyFile and CertPEM/KeyPEM", ErrInvalidConfig)
	}
	return nil
}

// tlsCreds is one loaded set of credentials.
type tlsCreds struct {
	cert tls.Certificate
	pool *x509.CertPool
	// src: the CA, certificate and key bytes they were parsed from, to
	// notice a change of the files.
	src [3][]byte
}

// tlsState holds a node's current credentials and reloads them.
type tlsState struct {
	cfg  TLSConfig
	host string // the host of the node's name, which its certificate must cover
	mu   sync.Mutex
	cur  atomic.Pointer[tlsCreds]
}

func newTLSState(cfg TLSConfig, name string) (*tlsState, error) {
	host, _, err := net.SplitHostPort(name)
	if err != nil {
		return nil, fmt.Errorf("%w: node name %q: %v", ErrInvalidConfig, name, err)
	}
	s := &tlsState{cfg: cfg, host: host}
	if _, err := s.reload(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return s, nil
}

func readSource(file string, inline []byte) ([]byte, error) {
	if file == "" {
		return inline, nil
	}
	return os.ReadFile(file)
}

// reload reads the credentials' sources and, if they changed, parses and
// checks them and makes them current. On any error the current ones stay.
func (s *tlsState) reload() (*tlsCreds, error) {
	var src [3][]byte
	var err error
	for i, f := range []struct {
		file   string
		inline []byte
	}{{s.cfg.CAFile, s.cfg.CAPEM}, {s.cfg.CertFile, s.cfg.CertPEM}, {s.cfg.KeyFile, s.cfg.KeyPEM}} {
		if src[i], err = readSource(f.file, f.inline); err != nil {
			return s.cur.Load(), fmt.Errorf("TLS credentials: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.cur.Load(); cur != nil && bytes.Equal(cur.src[0], src[0]) && bytes.Equal(cur.src[1], src[1]) && bytes.Equal(cur.src[2], src[2]) {
		return cur, nil
	}
	creds, err := parseCreds(src, s.host)
	if err != nil {
		return s.cur.Load(), err
	}
	s.cur.Store(creds)
	return creds, nil
}

// parseCreds parses PEM credentials and checks that the certificate
// chains to the pool, now, for both uses, and covers host: a node would
// otherwise be refused by every peer, and a rotation to such files would
// cut it off, so they are refused here instead.
func parseCreds(src [3][]byte, host string) (*tlsCreds, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(src[0]) {
		return nil, errors.New("TLS CA: no PEM certificate found")
	}
	cert, err := tls.X509KeyPair(src[1], src[2])
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	leaf := cert.Leaf
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("TLS certificate chain: %w", err)
		}
		inter.AddCert(c)
	}
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
			return nil, fmt.Errorf("TLS certificate does not verify against the CA for use %v: %w", use, err)
		}
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return nil, fmt.Errorf("TLS certificate is not valid for this node's host: %w", err)
	}
	return &tlsCreds{cert: cert, pool: pool, src: src}, nil
}

// current returns the credentials for a new connection, reloading them
// first if their files changed. A failed reload keeps the old ones and is
// logged, rate limited.
func (s *tlsState) current(n *Node) *tlsCreds {
	creds, err := s.reload()
	if err != nil {
		n.authLog.log(n, "kept the previous TLS credentials", err)
	}
	return creds
}

// ReloadTLS reads the TLS credentials' files again and uses them for every
// connection opened from now on; connections already open keep theirs.
// Nodes also do this by themselves whenever a connection opens, so calling
// it is needed only to learn at once whether new files are acceptable. On
// an error (a file missing or malformed, a certificate that does not
// chain to the CA, has expired or does not cover the node's host) the
// previous credentials stay in use. Without Config.TLS it returns
// ErrInvalidConfig.
func (n *Node) ReloadTLS() error {
	if n.auth == nil || n.auth.tls == nil {
		return fmt.Errorf("%w: node %s has no TLS configuration", ErrInvalidConfig, n.name)
	}
	if _, err := n.auth.tls.reload(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// authConfig is how a node authenticates its connections; nil means not at
// all (connection version 1).
type authConfig struct {
	mode   byte
	secret []byte
	tls    *tlsState
}

// tlsConn is a TLS connection whose Close closes the TCP connection at
// once. tls.Conn.Close first sends a close_notify alert, which can block
// for seconds on a peer that stopped reading, and links close connections
// under their lock.
type tlsConn struct {
	*tls.Conn
	raw net.Conn
}

func (c *tlsConn) Close() error { return c.raw.Close() }

// SyscallConn gives Node.Unread the socket (its kernel queue holds
// encrypted bytes, close enough to count what waits).
func (c *tlsConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	return sc.SyscallConn()
}

// openConn opens a dialled connection to peer: the preamble and, with
// credentials, the handshake. It returns the connection to write frames
// to. Handshake failures wrap ErrAuthentication.
func (n *Node) openConn(raw net.Conn, peer string) (net.Conn, error) {
	if n.auth == nil {
		if _, err := raw.Write(preamble[:]); err != nil {
			return nil, err
		}
		return raw, nil
	}
	if err := raw.SetDeadline(time.Now().Add(n.cfg.ConnectTimeout)); err != nil {
		return nil, err
	}
	c, err := n.auth.client(n, raw, peer)
	if err != nil {
		return nil, fmt.Errorf("%w: handshake with %s: %w", ErrAuthentication, peer, err)
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

// client runs the dialer's side of the handshake on raw.
func (a *authConfig) client(n *Node, raw net.Conn, peer string) (net.Conn, error) {
	var b [6]byte
	copy(b[:], preambleAuth[:])
	b[5] = a.mode
	if _, err := raw.Write(b[:]); err != nil {
		return nil, err
	}
	var c net.Conn = raw
	var binding []byte
	if a.tls != nil {
		creds := a.tls.current(n)
		host, _, err := net.SplitHostPort(peer)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    creds.pool,
			// The server's certificate must cover the host of the name
			// we dial.
			ServerName: host,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &creds.cert, nil
			},
		})
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		st := tc.ConnectionState()
		if binding, err = st.ExportKeyingMaterial(authExporterLabel, nil, 32); err != nil {
			return nil, err
		}
		c = &tlsConn{Conn: tc, raw: raw}
	}
	var nonceD [authNonceBytes]byte
	if _, err := rand.Read(nonceD[:]); err != nil {
		return nil, err
	}
	hello := wire.AppendString(nil, n.name)
	hello = append(hello, nonceD[:]...)
	if err := writeAuthMessage(c, hello); err != nil {
		return nil, err
	}
	msg, err := readAuthMessage(c)
	if err != nil {
		return nil, fmt.Errorf("no challenge (the peer refused us?): %w", err)
	}
	r := wire.NewReader(msg)
	acceptor := r.String()
	nonceA := r.Raw(authNonceBytes)
	macA := r.Bytes()
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("malformed challenge: %w", err)
	}
	if acceptor != peer {
		return nil, fmt.Errorf("peer says it is %q, dialled %q", acceptor, peer)
	}
	var macD []byte
	if a.secret != nil {
		t := authTranscript(a.mode, n.name, peer, nonceD[:], nonceA, binding)
		if !hmac.Equal(macA, authMAC(a.secret, authLabelAcceptor, t)) {
			return nil, errors.New("peer does not know the cluster secret")
		}
		macD = authMAC(a.secret, authLabelDialer, t)
	} else if len(macA) != 0 {
		return nil, errors.New("unexpected MAC from a peer without a secret")
	}
	if err := writeAuthMessage(c, wire.AppendBytes(nil, macD)); err != nil {
		return nil, err
	}
	return c, nil
}

// accept runs the acceptor's side of the handshake on raw, whose
// preamble (version 2) was read. It returns the connection to read frames
// from, with a buffered reader over it, and the dialer's authenticated
// name.
func (a *authConfig) accept(n *Node, raw net.Conn) (net.Conn, *bufio.Reader, string, error) {
	var mode [1]byte
	if _, err := io.ReadFull(raw, mode[:]); err != nil {
		return nil, nil, "", fmt.Errorf("no mode: %w", err)
	}
	if mode[0] != a.mode {
		return nil, nil, "", fmt.Errorf("%w: peer's security mode is %s, this node's %s", ErrProtocolMismatch, modeString(mode[0]), modeString(a.mode))
	}
	var c net.Conn = raw
	var binding []byte
	var peerCert *x509.Certificate
	if a.tls != nil {
		creds := a.tls.current(n)
		tc := tls.Server(raw, &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{creds.cert},
			ClientCAs:    creds.pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			// Every connection verifies its peer's certificate afresh
			// (expiry, a reloaded CA): no resumption.
			SessionTicketsDisabled: true,
		})
		if err := tc.Handshake(); err != nil {
			return nil, nil, "", fmt.Errorf("TLS: %w", err)
		}
		st := tc.ConnectionState()
		if len(st.PeerCertificates) == 0 {
			return nil, nil, "", errors.New("TLS: no client certificate")
		}
		peerCert = st.PeerCertificates[0]
		var err error
		if binding, err = st.ExportKeyingMaterial(authExporterLabel, nil, 32); err != nil {
			return nil, nil, "", err
		}
		c = &tlsConn{Conn: tc, raw: raw}
	}
	r := bufio.NewReaderSize(c, 64<<10)
	msg, err := readAuthMessage(r)
	if err != nil {
		return nil, nil, "", fmt.Errorf("no hello: %w", err)
	}
	hr := wire.NewReader(msg)
	dialer := hr.String()
	nonceD := hr.Raw(authNonceBytes)
	if err := hr.Done(); err != nil {
		return nil, nil, "", fmt.Errorf("malformed hello: %w", err)
	}
	if dialer == "" || len(dialer) > maxAuthName {
		return nil, nil, "", fmt.Errorf("bad node name of %d bytes", len(dialer))
	}
	var nonceA [authNonceBytes]byte
	if _, err := rand.Read(nonceA[:]); err != nil {
		return nil, nil, "", err
	}
	var t, macA []byte
	if a.secret != nil {
		t = authTranscript(a.mode, dialer, n.name, nonceD, nonceA[:], binding)
		macA = authMAC(a.secret, authLabelAcceptor, t)
	}
	ch := wire.AppendString(nil, n.name)
	ch = append(ch, nonceA[:]...)
	ch = wire.AppendBytes(ch, macA)
	if err := writeAuthMessage(c, ch); err != nil {
		return nil, nil, "", err
	}
	msg, err = readAuthMessage(r)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s sent no proof: %w", dialer, err)
	}
	pr := wire.NewReader(msg)
	macD := pr.Bytes()
	if err := pr.Done(); err != nil {
		return nil, nil, "", fmt.Errorf("malformed proof from %s: %w", dialer, err)
	}
	if a.secret != nil {
		if !hmac.Equal(macD, authMAC(a.secret, authLabelDialer, t)) {
			return nil, nil, "", fmt.Errorf("%s does not know the cluster secret", dialer)
		}
	} else if len(macD) != 0 {
		return nil, nil, "", fmt.Errorf("unexpected MAC from %s", dialer)
	}
	if peerCert != nil {
		host, _, err := net.SplitHostPort(dialer)
		if err != nil {
			return nil, nil, "", fmt.Errorf("node name %q: %w", dialer, err)
		}
		if err := peerCert.VerifyHostname(host); err != nil {
			return nil, nil, "", fmt.Errorf("certificate does not cover the name %s claims: %w", dialer, err)
		}
	}
	return c, r, dialer, nil
}

func modeString(m byte) string {
	switch m {
	case modeTLS:
		return "TLS"
	case modeSecret:
		return "secret"
	case modeTLS | modeSecret:
		return "TLS+secret"
	}
	return fmt.Sprintf("unknown (%#x)", m)
}

func authTranscript(mode byte, dialer, acceptor string, nonceD, nonceA, binding []byte) []byte {
	t := []byte{mode}
	t = wire.AppendString(t, dialer)
	t = wire.AppendString(t, acceptor)
	t = append(t, nonceD...)
	t = append(t, nonceA...)
	return wire.AppendBytes(t, binding)
}

func authMAC(secret []byte, label string, transcript []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(transcript)
	return m.Sum(nil)
}

func writeAuthMessage(w io.Writer, body []byte) error {
	b := binary.LittleEndian.AppendUint16(make([]byte, 0, 2+len(body)), uint16(len(body)))
	_, err := w.Write(append(b, body...))
	return err
}

func readAuthMessage(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	size := int(binary.LittleEndian.Uint16(hdr[:]))
	if size > authMaxMessage {
		return nil, fmt.Errorf("handshake message of %d bytes exceeds %d", size, authMaxMessage)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
