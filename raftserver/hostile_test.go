package raftserver

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/testpki"
	"github.com/rago-raft/rago/internal/wire"
	"github.com/rago-raft/rago/raftserver/core"
)

// TestHostilePeersAreRefusedAndLoseNothing runs every hostile peer of the
// trust boundary (docs/security.md, "The hostile-peer suite") against one
// running 3-member cluster whose nodes authenticate each other over TCP,
// and checks after each that nothing was lost: the same leader, agreed by
// every member, in the same term; every acknowledged write readable with
// a consistent query; every member running; and the refusal counted
// exactly where the library counts it, and nothing else refused.
//
// It runs twice. With mutual TLS and the cluster secret, the strongest
// setting, every case applies. With the secret alone, the cases about
// certificates do not, and the others mean more: the replayed handshake
// is then refused by the handshake's own nonces and MACs, where with TLS
// the TLS handshake already refuses it, and anyone holding the secret can
// claim any node name.
//
// Every hostile payload is built so that, taken, it would show: Raft
// messages carry a term a thousand above the cluster's (or one beyond
// core.MaxTerm), in the name of the one sender the target takes them
// from where the case allows it; exits and deletes would stop or remove a
// member. A case fails if its protection is removed, not only if its
// counter does not move.
func TestHostilePeersAreRefusedAndLoseNothing(t *testing.T) {
	for _, m := range []struct {
		name string
		tls  bool
	}{{"tls+secret", true}, {"secret", false}} {
		t.Run(m.name, func(t *testing.T) {
			h := startHostile(t, m.tls)
			h.cases(t)
		})
	}
}

// hostile is a cluster under attack and what must survive it.
type hostile struct {
	t      testing.TB // the test that started it
	c      *cluster
	tls    bool
	ca     *testpki.CA
	roots  *x509.CertPool
	secret []byte
	// lead is the leader, li its index, fi the follower most cases aim at
	// and oi the other follower; term is the cluster's term, which no
	// case may move.
	lead       ServerID
	li, fi, oi int
	term       uint64
	// acked holds every acknowledged write: key -> value.
	acked map[string]string
	// inbox is a process on the follower's node that hostile frames also
	// write to: nothing may reach it.
	inbox *actor.Inbox
	// outsider is an authenticated node that hosts no member.
	outsider *System
}

const hostileSecretLen = 32

func startHostile(t *testing.T, withTLS bool) *hostile {
	now := time.Now()
	h := &hostile{t: t, tls: withTLS, acked: map[string]string{}}
	h.secret = make([]byte, hostileSecretLen)
	_, _ = rand.Read(h.secret)
	if withTLS {
		ca, err := testpki.NewCA("cluster CA", now.Add(-time.Hour), now.Add(time.Hour))
		require.NoError(t, err)
		h.ca = ca
		h.roots = x509.NewCertPool()
		h.roots.AppendCertsFromPEM(ca.CertPEM)
	}
	h.c = startClusterOf(t, 3, "kv", h.credentials)
	h.outsider = h.startOutsider(t)
	h.lead = h.c.agreedLeader("before the attacks")
	h.li = h.c.index(h.lead)
	h.fi, h.oi = (h.li+1)%3, (h.li+2)%3
	h.write(t, "first")
	st := h.c.status(h.li)
	require.NotNil(t, st)
	h.term = st.Term
	ib, err := h.c.systems[h.fi].Node().NewInbox()
	require.NoError(t, err)
	t.Cleanup(ib.Close)
	h.inbox = ib
	return h
}

// credentials gives a node of the cluster its credentials: the secret,
// and with TLS a certificate of its own for 127.0.0.1.
func (h *hostile) credentials(cfg *SystemConfig) {
	cfg.Node.ClusterSecret = h.secret
	if h.tls {
		c := h.issue(h.t, "127.0.0.1", 0)
		cfg.Node.TLS = &actor.TLSConfig{CAPEM: h.ca.CertPEM, CertPEM: c.CertPEM, KeyPEM: c.KeyPEM}
	}
}

// issue makes a certificate of the cluster's CA for host, valid for an
// hour around now shifted by shift.
func (h *hostile) issue(t testing.TB, host string, shift time.Duration) testpki.Cert {
	now := time.Now().Add(shift)
	c, err := h.ca.Issue([]string{host}, now.Add(-time.Hour), now.Add(time.Hour))
	require.NoError(t, err)
	return c
}

// startOutsider starts a system with the cluster's credentials that hosts
// no member of it.
func (h *hostile) startOutsider(t *testing.T) *System {
	cfg := testSystemConfig(t, t.TempDir())
	h.credentials(&cfg)
	s, err := StartSystem(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// cases runs every hostile peer as a subtest, in order.
func (h *hostile) cases(t *testing.T) {
	h.run(t, "control: a peer with good credentials gets through", nil, func(t *testing.T) {
		// The hand-made dialer of the cases below, with every credential
		// right and a harmless frame, is taken: each refusal below is down
		// to the one thing its case changes.
		raw, c, err := h.good("127.0.0.1:1").open(t, h.target(h.fi), nil)
		require.NoError(t, err)
		defer raw.Close()
		writeFrames(t, c, rawFrame("127.0.0.1:1", sendItem(t, h.inbox.Ref().Name, "accepted")))
		m, err := h.inbox.ReceiveTimeout(waitFor)
		require.NoError(t, err)
		require.Equal(t, "accepted", m)
	})

	// 1. No credentials.
	h.run(t, "no credentials: a node without them", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
		plain, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0", ShutdownTimeout: time.Second})
		require.NoError(t, err)
		defer plain.Stop()
		before := h.nodeStats(h.fi).RefusedConnections
		require.NoError(t, plain.Send(Ref(h.c.members[h.fi]), &peerMsg{From: h.lead, Msg: h.deposing()}))
		require.Eventually(t, func() bool { return h.nodeStats(h.fi).RefusedConnections > before }, waitFor, 5*time.Millisecond,
			"the follower refuses the connection")
		plain.Stop() // no second attempt to count
	})
	h.run(t, "no credentials: frames in the leader's name without a handshake", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
		// As an unauthenticated node would send them, and as a node
		// without credentials would believe them.
		h.refusedRaw(t, append([]byte{'R', 'A', 'G', 'O', 1}, framed(h.hostileFrame(t))...))
	})
	h.run(t, "no credentials: an unknown connection version", want{"RefusedConnections": {h.fi: 1}, "RefusedVersion": {h.fi: 1}}, func(t *testing.T) {
		h.refusedRaw(t, append([]byte{'R', 'A', 'G', 'O', 9}, framed(h.hostileFrame(t))...))
	})
	h.run(t, "no credentials: a handshake with an empty proof", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
		d := h.good(h.lead.Node)
		d.secret = nil
		h.refusedDial(t, d)
	})
	if h.tls {
		h.run(t, "no credentials: a handshake without a certificate", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
			d := h.good(h.lead.Node)
			d.cert = nil
			h.refusedDial(t, d)
		})
	}

	// 2. The wrong cluster secret.
	h.run(t, "the wrong cluster secret", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
		d := h.good(h.lead.Node)
		d.secret = bytes.Repeat([]byte{'x'}, hostileSecretLen)
		h.refusedDial(t, d)
	})

	// 3-5. Certificates.
	if h.tls {
		h.run(t, "a certificate of another CA", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
			now := time.Now()
			other, err := testpki.NewCA("other CA", now.Add(-time.Hour), now.Add(time.Hour))
			require.NoError(t, err)
			c, err := other.Issue([]string{"127.0.0.1"}, now.Add(-time.Hour), now.Add(time.Hour))
			require.NoError(t, err)
			d := h.good(h.lead.Node)
			d.cert = keyPair(t, c)
			h.refusedDial(t, d)
		})
		h.run(t, "an expired certificate", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
			d := h.good(h.lead.Node)
			d.cert = keyPair(t, h.issue(t, "127.0.0.1", -2*time.Hour))
			h.refusedDial(t, d)
		})
		h.run(t, "a certificate for another name", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
			// Signed by the cluster's CA, valid now, for another host
			// than the one of the node name it claims.
			d := h.good(h.lead.Node)
			d.cert = keyPair(t, h.issue(t, "127.0.0.2", 0))
			h.refusedDial(t, d)
		})
	}

	// 6. An authenticated node that hosts no member.
	intruder := ServerID{Name: "kv9", Node: h.outsider.Name()}
	h.run(t, "non-member: Raft messages in its own server's name", want{"RefusedPeerMessages": {h.fi: 3, h.li: 1}}, func(t *testing.T) {
		from := h.outsider.Node()
		h.forgedRaft(t, from, h.fi, intruder, h.deposing())
		h.forgedRaft(t, from, h.fi, intruder, &core.AppendEntries{Term: h.term + 1000, PrevIndex: 0, PrevTerm: 0, Commit: 0})
		// At the top of the range terms may take: not refused for its
		// term, but for its sender.
		h.forgedRaft(t, from, h.fi, intruder, &core.VoteRequest{Term: core.MaxTerm, LastIndex: 1 << 40, LastTerm: 1 << 40, Transfer: true})
		h.forgedRaft(t, from, h.li, intruder, &core.VoteRequest{Term: h.term + 1000, LastIndex: 1 << 40, LastTerm: 1 << 40, Transfer: true})
	})
	h.run(t, "non-member: Raft messages in a member's name", want{"RefusedPeerMessages": {h.fi: 1, h.li: 1}}, func(t *testing.T) {
		from := h.outsider.Node()
		h.forgedRaft(t, from, h.fi, h.lead, h.deposing())
		h.forgedRaft(t, from, h.li, h.c.members[h.oi], &core.VoteRequest{Term: h.term + 1000, LastIndex: 1 << 40, LastTerm: 1 << 40, Transfer: true})
	})
	h.run(t, "non-member: a frame in the leader's node's name", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
		// Authenticated as itself, then speaking for another node: the
		// connection is closed at that frame.
		raw, c, err := h.good("127.0.0.1:1").open(t, h.target(h.fi), nil)
		require.NoError(t, err)
		defer raw.Close()
		writeFrames(t, c, h.hostileFrame(t))
		waitClosed(t, raw)
		h.requireNothingDelivered(t)
	})
	h.run(t, "non-member: exit signals", want{"RefusedExits": {h.li: 3}}, func(t *testing.T) {
		killed := actor.Reason{Kind: actor.ReasonKilled, Detail: "forged"}
		node := h.c.systems[h.li].Node()
		before := node.Stats().RefusedExits
		for _, name := range []string{h.lead.Name, managerName, logSupName} {
			require.NoError(t, h.outsider.Node().Exit(actor.Ref{Name: name, Node: h.lead.Node}, killed))
		}
		require.Eventually(t, func() bool { return node.Stats().RefusedExits >= before+3 }, waitFor, 5*time.Millisecond,
			"the exits are refused")
	})
	h.run(t, "non-member: system requests to delete members", want{"RefusedSystemRequests": {h.fi: 2, h.li: 1, h.oi: 1}}, func(t *testing.T) {
		ctx := h.c.ctx()
		require.ErrorIs(t, h.outsider.ForceDeleteServer(ctx, h.c.members[h.fi]), ErrNotPermitted)
		require.ErrorIs(t, h.outsider.DeleteCluster(ctx, h.c.members), ErrNotPermitted)
	})

	// 7. Terms at and near 2^64-1, from an authenticated node in the name
	// of the only sender each target takes them from: the leader's node
	// towards a follower, a follower's towards the leader. With TLS any
	// node with a certificate for the host (or, with the secret alone,
	// anyone holding it) can claim these names on one host
	// (docs/security.md): only the bound on terms refuses these.
	h.run(t, "terms beyond MaxTerm", want{"DroppedBadMessage": {h.fi: 4, h.li: 2}}, func(t *testing.T) {
		h.outOfRange(t, h.fi, h.lead,
			&core.Heartbeat{Term: math.MaxUint64, Seq: 1, Commit: 1},
			&core.Heartbeat{Term: math.MaxUint64 - 1, Seq: 1, Commit: 1},
			&core.Heartbeat{Term: core.MaxTerm + 1, Seq: 1, Commit: 1},
			&core.AppendEntries{Term: math.MaxUint64, PrevIndex: 1, PrevTerm: 1})
		h.outOfRange(t, h.li, h.c.members[h.fi],
			&core.VoteRequest{Term: math.MaxUint64, LastIndex: 1 << 40, LastTerm: 1 << 40, Transfer: true},
			&core.VoteRequest{Term: core.MaxTerm + 1, LastIndex: 1 << 40, LastTerm: 1 << 40, Transfer: true})
	})

	// 8. A replayed handshake.
	h.run(t, "a replayed handshake", want{"RefusedConnections": {h.fi: 1}}, func(t *testing.T) {
		// A legitimate handshake of the leader's node, recorded on the
		// wire; it is taken, and so is its frame.
		var rec bytes.Buffer
		raw, c, err := h.good(h.lead.Node).open(t, h.target(h.fi), &rec)
		require.NoError(t, err)
		handshake := bytes.Clone(rec.Bytes())
		writeFrames(t, c, rawFrame(h.lead.Node, sendItem(t, h.inbox.Ref().Name, "recorded")))
		m, err := h.inbox.ReceiveTimeout(waitFor)
		require.NoError(t, err)
		require.Equal(t, "recorded", m)
		raw.Close()

		// Its bytes again on a new connection, then a hostile frame:
		// without TLS the acceptor's fresh nonce makes the recorded proof
		// worthless; with TLS the recorded TLS handshake already fails.
		replay, err := net.Dial("tcp", h.target(h.fi))
		require.NoError(t, err)
		defer replay.Close()
		_, err = replay.Write(handshake)
		require.NoError(t, err)
		_, _ = replay.Write(framed(h.hostileFrame(t))) // may fail: the node may have closed it already
		waitClosed(t, replay)
		h.requireNothingDelivered(t)
	})
}

// want is what a case's refusals add to the counters of the members'
// nodes: counter name -> member index -> count. Every counter not named
// must not move.
type want map[string]map[int]uint64

// counterNames are the counters a case's refusals may show in, on the
// members' actor nodes and systems.
var counterNames = []string{"RefusedConnections", "FailedHandshakes", "RefusedVersion", "RefusedExits",
	"DroppedBadMessage", "RefusedPeerMessages", "RefusedSystemRequests"}

// counters reads every counter of counterNames on every member's node.
func (h *hostile) counters() map[string][3]uint64 {
	out := map[string][3]uint64{}
	for i, s := range h.c.systems {
		ns, ss := s.Node().Stats(), s.Stats()
		for name, v := range map[string]uint64{
			"RefusedConnections": ns.RefusedConnections, "FailedHandshakes": ns.FailedHandshakes,
			"RefusedVersion": ns.RefusedVersion, "RefusedExits": ns.RefusedExits,
			"DroppedBadMessage": ns.DroppedBadMessage, "RefusedPeerMessages": ss.RefusedPeerMessages,
			"RefusedSystemRequests": ss.RefusedSystemRequests,
		} {
			a := out[name]
			a[i] = v
			out[name] = a
		}
	}
	return out
}

func (h *hostile) nodeStats(i int) actor.Stats { return h.c.systems[i].Node().Stats() }

// run runs attack as a subtest between writes, then checks that nothing
// was lost and that the counters moved by exactly w.
func (h *hostile) run(t *testing.T, name string, w want, attack func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		parent := h.c.t
		h.c.t = t
		defer func() { h.c.t = parent }()
		h.write(t, name+" before")
		before := h.counters()
		attack(t)
		after := h.counters()
		for _, n := range counterNames {
			var got, exp [3]uint64
			for i := range 3 {
				got[i] = after[n][i] - before[n][i]
				exp[i] = w[n][i]
			}
			require.Equal(t, exp, got, "%s by member index (leader %d)", n, h.li)
		}
		h.write(t, name+" after")
		h.requireNothingLost(t)
	})
}

// write commits a write through the leader, which must still lead, and
// records it.
func (h *hostile) write(t *testing.T, what string) {
	key := fmt.Sprintf("k%d-%s", len(h.acked), strings.ReplaceAll(what, " ", "_"))
	val := fmt.Sprint(len(h.acked))
	_, leader, err := h.c.systems[h.li].ProcessCommand(h.c.ctx(), h.lead, []byte("set "+key+" "+val))
	require.NoError(t, err)
	require.Equal(t, h.lead, leader)
	h.acked[key] = val
}

// requireNothingLost checks the cluster after a case: one agreed leader,
// the same; the same term on every member; every member running; every
// acknowledged write readable with a consistent query.
func (h *hostile) requireNothingLost(t *testing.T) {
	require.Equal(t, h.lead, h.c.agreedLeader("after the attack"))
	for i, m := range h.c.members {
		s := h.c.systems[i]
		st, err := s.Overview(h.c.ctx(), m)
		require.NoError(t, err)
		require.Equal(t, h.term, st.Term, "%s changed term", m)
		require.LessOrEqual(t, st.Term, uint64(core.MaxTerm))
		local, err := s.LocalServer(h.c.ctx(), m.Name)
		require.NoError(t, err, "%s is still there", m)
		require.True(t, local.Running, "%s runs", m)
		require.True(t, s.Node().Alive(Ref(m)), "%s's process lives", m)
		require.NoError(t, s.Err())
		require.Equal(t, h.c.systems[i].Stats().RefusedPeerMessages, st.RefusedPeerMessages,
			"the server's own count is its system's: one member per node")
	}
	h.c.check(h.c.systems[h.li], h.acked)
}

// deposing is a heartbeat a thousand terms above the cluster's: taken, it
// would depose the leader and show in every member's term.
func (h *hostile) deposing() core.Message {
	return &core.Heartbeat{Term: h.term + 1000, Seq: 1, Commit: 1}
}

// hostileFrame is what a hostile connection to the follower carries: in
// the leader's node's name, a deposing heartbeat from the leader, which
// the follower would take from that node, and a message for the inbox.
func (h *hostile) hostileFrame(t testing.TB) []byte {
	return rawFrame(h.lead.Node,
		sendItem(t, h.c.members[h.fi].Name, &peerMsg{From: h.lead, Msg: h.deposing()}),
		sendItem(t, h.inbox.Ref().Name, "must not arrive"))
}

// target is the address of member i's node.
func (h *hostile) target(i int) string { return h.c.members[i].Node }

// refusedRaw writes b on a new connection to the follower's node, which
// must close it, and checks that nothing got through.
func (h *hostile) refusedRaw(t *testing.T, b []byte) {
	c, err := net.Dial("tcp", h.target(h.fi))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(b)
	require.NoError(t, err)
	waitClosed(t, c)
	h.requireNothingDelivered(t)
}

// refusedDial has d connect to the follower's node and send the hostile
// frame right after its proof; the node must close the connection and
// take nothing. The node counts a refusal before it closes.
func (h *hostile) refusedDial(t *testing.T, d dialer) {
	raw, c, err := d.open(t, h.target(h.fi), nil)
	defer raw.Close()
	if err == nil {
		// Written without waiting for a verdict; the node may have
		// closed the connection already.
		_, _ = c.Write(framed(h.hostileFrame(t)))
	}
	waitClosed(t, raw)
	h.requireNothingDelivered(t)
}

// requireNothingDelivered checks that no hostile message reached the
// inbox: a marker sent locally now must be the next message there.
func (h *hostile) requireNothingDelivered(t *testing.T) {
	node := h.c.systems[h.fi].Node()
	require.NoError(t, node.Send(h.inbox.Ref(), "marker"))
	m, err := h.inbox.ReceiveTimeout(waitFor)
	require.NoError(t, err)
	require.Equal(t, "marker", m)
}

// forgedRaft sends msg to member i from node as a message of from, and
// waits until member i refused it (counted) or took it (its term moved),
// then requires the refusal.
func (h *hostile) forgedRaft(t *testing.T, node *actor.Node, i int, from ServerID, msg core.Message) {
	before := h.c.systems[i].Stats().RefusedPeerMessages
	require.NoError(t, node.Send(Ref(h.c.members[i]), &peerMsg{From: from, Msg: msg}))
	h.waitLanded(t, i, func() bool { return h.c.systems[i].Stats().RefusedPeerMessages > before })
}

// outOfRange sends msgs, each as a message of from, to member i, in a
// frame of from's node on a connection authenticated as that node, and
// waits until each was refused (dropped as it does not decode) or taken.
func (h *hostile) outOfRange(t *testing.T, i int, from ServerID, msgs ...core.Message) {
	raw, c, err := h.good(from.Node).open(t, h.target(i), nil)
	require.NoError(t, err)
	defer raw.Close()
	items := make([][]byte, len(msgs))
	for k, m := range msgs {
		items[k] = sendItem(t, h.c.members[i].Name, &peerMsg{From: from, Msg: m})
	}
	before := h.nodeStats(i).DroppedBadMessage
	writeFrames(t, c, rawFrame(from.Node, items...))
	h.waitLanded(t, i, func() bool { return h.nodeStats(i).DroppedBadMessage >= before+uint64(len(msgs)) })
}

// waitLanded waits until refused says a forged message was refused or
// member i's term moved (it was taken), and requires that the term did
// not move.
func (h *hostile) waitLanded(t *testing.T, i int, refused func() bool) {
	var term uint64
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := h.c.systems[i].Overview(ctx, h.c.members[i])
		if err == nil {
			term = st.Term
		}
		return refused() || term != h.term
	}, waitFor, 5*time.Millisecond, "the forged message never landed")
	require.Equal(t, h.term, term, "member %d took the forged message", i)
}

// good is a dialer with every credential the cluster's nodes have,
// claiming the node name name.
func (h *hostile) good(name string) dialer {
	d := dialer{name: name, mode: hsModeSecret, secret: h.secret}
	if h.tls {
		d.mode |= hsModeTLS
		d.roots = h.roots
		d.cert = keyPair(h.c.t, h.issue(h.c.t, "127.0.0.1", 0))
	}
	return d
}

func keyPair(t testing.TB, c testpki.Cert) *tls.Certificate {
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	require.NoError(t, err)
	return &pair
}

// The authenticated connection's handshake, from its description in
// actor/auth.go, written again here as another program would: the suite
// must not lean on the code it tests to play the attacker.
const (
	hsModeTLS         = 1 << 0
	hsModeSecret      = 1 << 1
	hsNonceBytes      = 32
	hsLabelDialer     = "rago auth v2 dialer"
	hsExporterLabel   = "EXPORTER-rago-auth"
	hsConnVersionAuth = 2
)

// dialer opens authenticated connections with whatever credentials it is
// given.
type dialer struct {
	name   string // the node name it claims
	mode   byte
	cert   *tls.Certificate // nil: presents none
	roots  *x509.CertPool
	secret []byte // nil: an empty proof
}

// recorder keeps a copy of every byte written to its connection.
type recorder struct {
	net.Conn
	buf *bytes.Buffer
}

func (r recorder) Write(p []byte) (int, error) {
	r.buf.Write(p)
	return r.Conn.Write(p)
}

// open connects to target and runs the dialer's side of the handshake. It
// returns the TCP connection (the caller closes it), the connection to
// write frames on, and the error that ended the handshake early, if any.
// With rec it records every byte it writes on the TCP connection.
func (d dialer) open(t testing.TB, target string, rec *bytes.Buffer) (net.Conn, net.Conn, error) {
	t.Helper()
	raw, err := net.Dial("tcp", target)
	require.NoError(t, err)
	require.NoError(t, raw.SetDeadline(time.Now().Add(waitFor)))
	var c net.Conn = raw
	if rec != nil {
		c = recorder{Conn: raw, buf: rec}
	}
	if _, err := c.Write([]byte{'R', 'A', 'G', 'O', hsConnVersionAuth, d.mode}); err != nil {
		return raw, nil, err
	}
	var binding []byte
	if d.mode&hsModeTLS != 0 {
		host, _, _ := net.SplitHostPort(target)
		tc := tls.Client(c, &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    d.roots,
			ServerName: host,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if d.cert == nil {
					return &tls.Certificate{}, nil
				}
				return d.cert, nil
			},
		})
		if err := tc.Handshake(); err != nil {
			return raw, nil, err
		}
		st := tc.ConnectionState()
		if binding, err = st.ExportKeyingMaterial(hsExporterLabel, nil, 32); err != nil {
			return raw, nil, err
		}
		c = tc
	}
	nonceD := make([]byte, hsNonceBytes)
	_, _ = rand.Read(nonceD)
	if err := writeHandshakeMessage(c, append(wire.AppendString(nil, d.name), nonceD...)); err != nil {
		return raw, nil, err
	}
	msg, err := readHandshakeMessage(c)
	if err != nil {
		return raw, nil, fmt.Errorf("no challenge: %w", err)
	}
	r := wire.NewReader(msg)
	acceptor, nonceA, _ := r.String(), r.Raw(hsNonceBytes), r.Bytes()
	if err := r.Done(); err != nil {
		return raw, nil, err
	}
	if acceptor != target {
		return raw, nil, fmt.Errorf("acceptor says it is %s", acceptor)
	}
	var proof []byte
	if d.secret != nil {
		tr := []byte{d.mode}
		tr = wire.AppendString(tr, d.name)
		tr = wire.AppendString(tr, acceptor)
		tr = append(tr, nonceD...)
		tr = append(tr, nonceA...)
		tr = wire.AppendBytes(tr, binding)
		mac := hmac.New(sha256.New, d.secret)
		mac.Write([]byte(hsLabelDialer))
		mac.Write(tr)
		proof = mac.Sum(nil)
	}
	if err := writeHandshakeMessage(c, wire.AppendBytes(nil, proof)); err != nil {
		return raw, nil, err
	}
	return raw, c, nil
}

func writeHandshakeMessage(w io.Writer, body []byte) error {
	_, err := w.Write(append(binary.LittleEndian.AppendUint16(nil, uint16(len(body))), body...))
	return err
}

func readHandshakeMessage(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.LittleEndian.Uint16(hdr[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

// sendItem is a send item of a frame (actor/frame.go): msg for the
// process named target.
func sendItem(t testing.TB, target string, msg actor.Message) []byte {
	tag, version, payload, err := actor.Encode(msg)
	require.NoError(t, err)
	const opSend = 1
	b := wire.AppendString([]byte{opSend}, target)
	b = wire.AppendUvarint(b, uint64(tag))
	b = append(b, version)
	return wire.AppendBytes(b, payload)
}

// framed puts each frame after its length, as a connection carries it.
func framed(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func writeFrames(t testing.TB, c net.Conn, frames ...[]byte) {
	_, err := c.Write(framed(frames...))
	require.NoError(t, err)
}

// waitClosed reads c until the node closes it, failing if it does not
// within waitFor: a node writes nothing after its challenge but what
// the frames it took call for, and the hostile ones call for nothing.
func waitClosed(t testing.TB, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "closed by the node, not timed out: %v", err)
}
