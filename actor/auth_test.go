package actor

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/internal/testpki"
	"github.com/rago-raft/rago/internal/wire"
)

// testCA is a throwaway certificate authority (internal/testpki).
type testCA struct {
	ca  *testpki.CA
	pem []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	ca, err := testpki.NewCA(name, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	require.NoError(t, err)
	return &testCA{ca: ca, pem: ca.CertPEM}
}

// testCert is a node certificate and its key, PEM.
type testCert struct {
	certPEM, keyPEM []byte
	serial          *big.Int
}

// issue signs a node certificate for hosts (IPs or DNS names), valid
// from notBefore to notAfter, for both TLS uses.
func (ca *testCA) issue(t testing.TB, hosts []string, notBefore, notAfter time.Time) testCert {
	t.Helper()
	c, err := ca.ca.Issue(hosts, notBefore, notAfter)
	require.NoError(t, err)
	return testCert{certPEM: c.CertPEM, keyPEM: c.KeyPEM, serial: c.Serial}
}

// valid issues a certificate for 127.0.0.1 valid now.
func (ca *testCA) valid(t testing.TB) testCert {
	return ca.issue(t, []string{"127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

func tlsConfigFor(ca []byte, c testCert) *TLSConfig {
	return &TLSConfig{CAPEM: ca, CertPEM: c.certPEM, KeyPEM: c.keyPEM}
}

var (
	testSecret  = []byte("0123456789abcdef-cluster-secret")
	otherSecret = []byte("fedcba9876543210-cluster-secret")
)

func startAuthNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	cfg.Address = "127.0.0.1:0"
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Second
	}
	n, err := StartNode(cfg)
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	return n
}

// authModes are the three ways to authenticate, each with fresh
// credentials from one CA.
func authModes(t testing.TB) map[string]func() Config {
	ca := newTestCA(t, "cluster CA")
	return map[string]func() Config{
		"tls":    func() Config { return Config{TLS: tlsConfigFor(ca.pem, ca.valid(t))} },
		"secret": func() Config { return Config{ClusterSecret: testSecret} },
		"both":   func() Config { return Config{TLS: tlsConfigFor(ca.pem, ca.valid(t)), ClusterSecret: testSecret} },
	}
}

func TestAuthenticatedNodesWork(t *testing.T) {
	for name, cfg := range authModes(t) {
		t.Run(name, func(t *testing.T) {
			a, b := startAuthNode(t, cfg()), startAuthNode(t, cfg())
			ibA, ibB := newInbox(t, a), newInbox(t, b)

			// Sends both ways, in order.
			for i := range 3 {
				require.NoError(t, a.Send(ibB.Ref(), echo{N: i, Text: "a to b"}))
			}
			for i := range 3 {
				require.Equal(t, echo{N: i, Text: "a to b"}, recv[echo](t, ibB))
			}
			require.NoError(t, b.Send(ibA.Ref(), "b to a"))
			require.Equal(t, "b to a", recv[string](t, ibA))

			// Calls.
			srv, err := b.Spawn(echoServer(Ref{}))
			require.NoError(t, err)
			r, err := a.Call(srv, "ping", waitFor)
			require.NoError(t, err)
			require.Equal(t, "ping", r)

			// Node and process monitors.
			ibA.MonitorNode(b.Name())
			require.Equal(t, NodeUp{Node: b.Name()}, recv[NodeUp](t, ibA))
			ibA.Monitor(srv)
			waitRemoteMonitor(t, b, srv, 1)
			require.NoError(t, b.Exit(srv, Reason{Kind: ReasonKilled}))
			require.Equal(t, ReasonKilled, recvUntil[Down](t, ibA).Reason.Kind)

			for _, n := range []*Node{a, b} {
				require.Zero(t, n.Stats().RefusedConnections, n.Name())
				require.Zero(t, n.Stats().FailedHandshakes, n.Name())
			}
		})
	}
}

// requireNothingDelivered checks that no message reached ib before now:
// a marker sent locally now must be the next message, since a mailbox is
// FIFO and a refused connection's reader has ended.
func requireNothingDelivered(t testing.TB, n *Node, ib *Inbox) {
	t.Helper()
	require.NoError(t, n.Send(ib.Ref(), "marker"))
	require.Equal(t, "marker", recv[string](t, ib))
}

func TestNodeWithoutCredentialsIsRefused(t *testing.T) {
	for name, cfg := range authModes(t) {
		t.Run(name, func(t *testing.T) {
			plain, secure := startAuthNode(t, Config{}), startAuthNode(t, cfg())
			ibP, ibS := newInbox(t, plain), newInbox(t, secure)

			// A plain node to a secured one.
			ibP.MonitorNode(secure.Name())
			require.NoError(t, plain.Send(ibS.Ref(), "let me in"))
			require.Equal(t, NodeDown{Node: secure.Name()}, recvUntil[NodeDown](t, ibP))
			eventually(t, func() bool { return secure.Stats().RefusedConnections >= 1 }, "the secured node counts the refusal")
			requireNothingDelivered(t, secure, ibS)

			// A secured node to a plain one: the plain node refuses the
			// unknown handshake, the secured one counts its failure.
			ibS.MonitorNode(plain.Name())
			require.NoError(t, secure.Send(ibP.Ref(), "let me in"))
			require.Equal(t, NodeDown{Node: plain.Name()}, recvUntil[NodeDown](t, ibS))
			require.Positive(t, secure.Stats().FailedHandshakes)
			eventually(t, func() bool { return plain.Stats().RefusedConnections >= 1 }, "the plain node counts the refusal")
			requireNothingDelivered(t, plain, ibP)
			require.Zero(t, plain.Stats().FailedHandshakes)
		})
	}
}

func TestWrongSecretIsRefusedBothWays(t *testing.T) {
	a := startAuthNode(t, Config{ClusterSecret: otherSecret})
	b := startAuthNode(t, Config{ClusterSecret: testSecret})
	ibA, ibB := newInbox(t, a), newInbox(t, b)
	ibA.MonitorNode(b.Name())
	require.NoError(t, a.Send(ibB.Ref(), "let me in"))
	require.Equal(t, NodeDown{Node: b.Name()}, recvUntil[NodeDown](t, ibA))
	// The dialer checks the acceptor's proof first and gives up; the
	// acceptor, left without the dialer's proof, refuses the connection.
	require.Positive(t, a.Stats().FailedHandshakes)
	eventually(t, func() bool { return b.Stats().RefusedConnections >= 1 }, "b counts the refusal")
	requireNothingDelivered(t, b, ibB)
	_, err := a.Call(Ref{Name: "x", Node: b.Name()}, "call", waitFor)
	require.ErrorIs(t, err, ErrNodeDown)
}

// rogue is a hand-made dialer that can present any credentials and
// sends its frame right after its proof, without waiting for a verdict:
// the acceptor must refuse it before it decodes that frame.
type rogue struct {
	self   string // the node name it claims
	mode   byte
	cert   *tls.Certificate
	roots  *x509.CertPool
	secret []byte
	// src is the frame's source; self if empty.
	src string
}

func rogueCert(t testing.TB, c testCert) *tls.Certificate {
	cert, err := tls.X509KeyPair(c.certPEM, c.keyPEM)
	require.NoError(t, err)
	return &cert
}

func poolOf(pems ...[]byte) *x509.CertPool {
	p := x509.NewCertPool()
	for _, b := range pems {
		p.AppendCertsFromPEM(b)
	}
	return p
}

// sendFrame is a frame, length included, that sends msg to to.
func sendFrame(t testing.TB, src string, to Ref, msg any) []byte {
	item := []byte{opSend}
	item = wire.AppendString(item, to.Name)
	item, err := appendMessage(item, mustCodec(t, msg), msg)
	require.NoError(t, err)
	f := appendFrame([]byte{0, 0, 0, 0}, src, 1, 1, item)
	binary.LittleEndian.PutUint32(f, uint32(len(f)-4))
	return f
}

// run connects to target, sends the handshake and then a frame sending msg
// to to, without waiting for a verdict. It returns the connection (the
// caller closes it) and the error that ended the handshake early, if any.
func (r rogue) run(t testing.TB, target string, to Ref, msg any) (net.Conn, error) {
	t.Helper()
	raw, err := net.Dial("tcp", target)
	require.NoError(t, err)
	require.NoError(t, raw.SetDeadline(time.Now().Add(waitFor)))
	_, err = raw.Write(append(preambleAuth[:], r.mode))
	require.NoError(t, err)
	var c net.Conn = raw
	var binding []byte
	if r.mode&modeTLS != 0 {
		host, _, _ := net.SplitHostPort(target)
		tc := tls.Client(raw, &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    r.roots,
			ServerName: host,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if r.cert == nil {
					return &tls.Certificate{}, nil
				}
				return r.cert, nil
			},
		})
		if err := tc.Handshake(); err != nil {
			return raw, err
		}
		st := tc.ConnectionState()
		binding, err = st.ExportKeyingMaterial(authExporterLabel, nil, 32)
		require.NoError(t, err)
		c = tc
	}
	nonceD := make([]byte, authNonceBytes)
	_, _ = rand.Read(nonceD)
	if err := writeAuthMessage(c, append(wire.AppendString(nil, r.self), nonceD...)); err != nil {
		return raw, err
	}
	var macD []byte
	if r.mode&modeSecret != 0 {
		// A proof needs the challenge.
		msg, err := readAuthMessage(c)
		if err != nil {
			return raw, err
		}
		rd := wire.NewReader(msg)
		acceptor, nonceA := rd.String(), rd.Raw(authNonceBytes)
		macD = authMAC(r.secret, authLabelDialer, authTranscript(r.mode, r.self, acceptor, nonceD, nonceA, binding))
	}
	src := r.src
	if src == "" {
		src = r.self
	}
	if err := writeAuthMessage(c, wire.AppendBytes(nil, macD)); err != nil {
		return raw, err
	}
	_, err = c.Write(sendFrame(t, src, to, msg))
	return raw, err
}

// waitClosed reads c until the node closes it (the node writes nothing
// after its challenge), failing at the deadline.
func waitClosed(t testing.TB, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "closed by the node, not timed out: %v", err)
}

func TestBadCredentialsAreRefusedBeforeAnyFrame(t *testing.T) {
	ca, otherCA := newTestCA(t, "cluster CA"), newTestCA(t, "other CA")
	good := ca.valid(t)
	now := time.Now()
	b := startAuthNode(t, Config{TLS: tlsConfigFor(ca.pem, ca.valid(t)), ClusterSecret: testSecret})
	ib := newInbox(t, b)
	roots := poolOf(ca.pem)
	self := "127.0.0.1:1"
	both := byte(modeTLS | modeSecret)

	// The control: the rogue with good credentials gets through, so each
	// refusal below is down to the one thing it changes.
	ok := rogue{self: self, mode: both, cert: rogueCert(t, good), roots: roots, secret: testSecret}
	c, err := ok.run(t, b.Name(), ib.Ref(), "accepted")
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "accepted", recv[string](t, ib))
	require.Zero(t, b.Stats().RefusedConnections)

	cases := map[string]rogue{
		"no certificate":            {self: self, mode: both, roots: roots, secret: testSecret},
		"wrong secret":              {self: self, mode: both, cert: rogueCert(t, good), roots: roots, secret: otherSecret},
		"certificate of another CA": {self: self, mode: both, cert: rogueCert(t, otherCA.valid(t)), roots: roots, secret: testSecret},
		"expired certificate": {self: self, mode: both, roots: roots, secret: testSecret,
			cert: rogueCert(t, ca.issue(t, []string{"127.0.0.1"}, now.Add(-2*time.Hour), now.Add(-time.Hour)))},
		"certificate for another name": {self: self, mode: both, roots: roots, secret: testSecret,
			cert: rogueCert(t, ca.issue(t, []string{"127.0.0.2", "node9.example"}, now.Add(-time.Hour), now.Add(time.Hour)))},
		"claims another name than its certificate's": {self: "127.0.0.2:1", mode: both, cert: rogueCert(t, good), roots: roots, secret: testSecret},
		"frame from another node":                    {self: self, src: "127.0.0.1:2", mode: both, cert: rogueCert(t, good), roots: roots, secret: testSecret},
		"TLS only against TLS and secret":            {self: self, mode: modeTLS, cert: rogueCert(t, good), roots: roots},
		"secret only against TLS and secret":         {self: self, mode: modeSecret, secret: testSecret},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			before := b.Stats().RefusedConnections
			c, _ := r.run(t, b.Name(), ib.Ref(), "must not arrive")
			defer c.Close()
			waitClosed(t, c)
			// The count precedes the close, which the rogue saw.
			require.Equal(t, before+1, b.Stats().RefusedConnections)
			requireNothingDelivered(t, b, ib)
		})
	}
}

// recordingConn keeps a copy of everything written to it.
type recordingConn struct {
	net.Conn
	written bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.written.Write(p)
	return c.Conn.Write(p)
}

func TestReplayedHandshakeIsRefused(t *testing.T) {
	b := startAuthNode(t, Config{ClusterSecret: testSecret})
	ib := newInbox(t, b)
	// A genuine dialer (this package's) whose bytes are recorded.
	dialer := &Node{name: "127.0.0.1:1", logger: slog.New(slog.DiscardHandler),
		auth: &authConfig{mode: modeSecret, secret: testSecret}, cfg: Config{ConnectTimeout: waitFor}}
	raw, err := net.Dial("tcp", b.Name())
	require.NoError(t, err)
	defer raw.Close()
	rec := &recordingConn{Conn: raw}
	c, err := dialer.openConn(rec, b.Name())
	require.NoError(t, err)
	_, err = rec.Write(sendFrame(t, dialer.name, ib.Ref(), "once"))
	require.NoError(t, err)
	require.Equal(t, "once", recv[string](t, ib))
	_ = c // without TLS, frames go on the TCP connection: rec

	// The same bytes again, on a new connection.
	replay, err := net.Dial("tcp", b.Name())
	require.NoError(t, err)
	defer replay.Close()
	_, err = replay.Write(rec.written.Bytes())
	require.NoError(t, err)
	// The acceptor sends its challenge and closes the connection.
	waitClosed(t, replay)
	require.Equal(t, uint64(1), b.Stats().RefusedConnections)
	requireNothingDelivered(t, b, ib)
}

func TestGarbageIsRefused(t *testing.T) {
	b := startAuthNode(t, Config{ClusterSecret: testSecret})
	ib := newInbox(t, b)
	huge := binary.LittleEndian.AppendUint16(append(preambleAuth[:], modeSecret), 0xFFFF)
	for name, garbage := range map[string][]byte{
		"HTTP":                    []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"unknown version":         {'R', 'A', 'G', 'O', 9, 0, 0, 0},
		"unknown mode":            append(preambleAuth[:], 0x80),
		"oversized hello":         append(huge, make([]byte, 64)...),
		"malformed hello":         append(binary.LittleEndian.AppendUint16(append(preambleAuth[:], modeSecret), 3), 0xFF, 0xFF, 0xFF),
		"a plain frame after all": append(preamble[:], sendFrame(t, "127.0.0.1:1", ib.Ref(), "must not arrive")...),
	} {
		t.Run(name, func(t *testing.T) {
			before := b.Stats().RefusedConnections
			c, err := net.Dial("tcp", b.Name())
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Write(garbage)
			require.NoError(t, err)
			waitClosed(t, c)
			require.Equal(t, before+1, b.Stats().RefusedConnections)
			requireNothingDelivered(t, b, ib)
		})
	}
}

func TestStalledHandshakeIsRefused(t *testing.T) {
	b := startAuthNode(t, Config{ClusterSecret: testSecret, ConnectTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", b.Name())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(preambleAuth[:2]) // and then nothing
	require.NoError(t, err)
	waitClosed(t, c)
	require.Equal(t, uint64(1), b.Stats().RefusedConnections)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	// Write and rename, as a certificate rotation should, so a reader
	// never sees half a file.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

func TestCertificatesReloadWithoutRestart(t *testing.T) {
	ca, newCA := newTestCA(t, "cluster CA"), newTestCA(t, "next CA")
	dir := t.TempDir()
	files := func(node string) *TLSConfig {
		return &TLSConfig{
			CAFile:   filepath.Join(dir, node+"-ca.pem"),
			CertFile: filepath.Join(dir, node+"-cert.pem"),
			KeyFile:  filepath.Join(dir, node+"-key.pem"),
		}
	}
	put := func(cfg *TLSConfig, caPEM []byte, c testCert) {
		writeFile(t, cfg.CAFile, caPEM)
		writeFile(t, cfg.CertFile, c.certPEM)
		writeFile(t, cfg.KeyFile, c.keyPEM)
	}
	// a moves to the next CA first and trusts both; b trusts only the old.
	cfgA, cfgB := files("a"), files("b")
	put(cfgA, append(append([]byte(nil), ca.pem...), newCA.pem...), newCA.valid(t))
	certB := ca.valid(t)
	put(cfgB, ca.pem, certB)
	a := startAuthNode(t, Config{TLS: cfgA, ReconnectInterval: 20 * time.Millisecond})
	b := startAuthNode(t, Config{TLS: cfgB, ReconnectInterval: 20 * time.Millisecond})
	ibA := newInbox(t, a)
	ibA.MonitorNode(b.Name())
	require.Equal(t, NodeDown{Node: b.Name()}, recv[NodeDown](t, ibA))
	// b counts the refusal when its side of the handshake ends, which may
	// be after a's side failed and a reported b down.
	require.Eventually(t, func() bool { return b.Stats().RefusedConnections > 0 },
		10*time.Second, 5*time.Millisecond, "b refused a's connections")

	// b learns the next CA from its file; a's retries get through.
	writeFile(t, cfgB.CAFile, append(append([]byte(nil), ca.pem...), newCA.pem...))
	require.Equal(t, NodeUp{Node: b.Name()}, recv[NodeUp](t, ibA))

	// ReloadTLS refuses bad files and keeps the credentials in use.
	writeFile(t, cfgB.CertFile, []byte("not a certificate"))
	require.ErrorIs(t, b.ReloadTLS(), ErrInvalidConfig)
	other := newCA.issue(t, []string{"127.0.0.9"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	put(cfgB, append(append([]byte(nil), ca.pem...), newCA.pem...), other)
	require.ErrorIs(t, b.ReloadTLS(), ErrInvalidConfig, "a certificate for another host")
	require.Equal(t, certB.serial, servedSerial(t, b, ca.pem, newCA.valid(t)), "the previous certificate is still served")

	// A good new certificate is served from the next connection on.
	next := newCA.valid(t)
	put(cfgB, append(append([]byte(nil), ca.pem...), newCA.pem...), next)
	require.NoError(t, b.ReloadTLS())
	require.Equal(t, next.serial, servedSerial(t, b, newCA.pem, newCA.valid(t)))

	// The nodes keep working across it all.
	ibB := newInbox(t, b)
	require.NoError(t, a.Send(ibB.Ref(), "after rotation"))
	require.Equal(t, "after rotation", recv[string](t, ibB))
	require.Error(t, (&Node{name: "x:1"}).ReloadTLS(), "a node without TLS has nothing to reload")
}

// servedSerial opens a TLS connection to n and returns the serial number of
// the certificate n presents.
func servedSerial(t testing.TB, n *Node, caPEM []byte, client testCert) *big.Int {
	t.Helper()
	c, err := net.Dial("tcp", n.Name())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(append(preambleAuth[:], modeTLS))
	require.NoError(t, err)
	tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: poolOf(caPEM), ServerName: "127.0.0.1",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return rogueCert(t, client), nil }})
	require.NoError(t, tc.Handshake())
	return tc.ConnectionState().PeerCertificates[0].SerialNumber
}

func TestAuthConfigIsValidated(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	good := ca.valid(t)
	now := time.Now()
	expired := ca.issue(t, []string{"127.0.0.1"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
	otherHost := ca.issue(t, []string{"node9.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	for name, cfg := range map[string]Config{
		"short secret":                 {ClusterSecret: []byte("short")},
		"no CA":                        {TLS: &TLSConfig{CertPEM: good.certPEM, KeyPEM: good.keyPEM}},
		"cert without key":             {TLS: &TLSConfig{CAPEM: ca.pem, CertPEM: good.certPEM}},
		"both file and PEM":            {TLS: &TLSConfig{CAPEM: ca.pem, CAFile: "ca.pem", CertPEM: good.certPEM, KeyPEM: good.keyPEM}},
		"expired certificate":          {TLS: tlsConfigFor(ca.pem, expired)},
		"certificate of another CA":    {TLS: tlsConfigFor(newTestCA(t, "other").pem, good)},
		"certificate for another host": {TLS: tlsConfigFor(ca.pem, otherHost)},
		"missing file":                 {TLS: &TLSConfig{CAFile: filepath.Join(t.TempDir(), "none.pem"), CertPEM: good.certPEM, KeyPEM: good.keyPEM}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Address = "127.0.0.1:0"
			n, err := StartNode(cfg)
			if n != nil {
				n.Stop()
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}
