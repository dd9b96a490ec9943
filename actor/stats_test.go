package actor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// peerStatsOf returns n's counters for peer.
func peerStatsOf(t *testing.T, n *Node, peer string) PeerStats {
	t.Helper()
	for _, ps := range n.PeerStats() {
		if ps.Node == peer {
			return ps
		}
	}
	t.Fatalf("%s has no stats for %s", n.Name(), peer)
	panic("unreachable")
}

// sub returns the counters of s that grew since prev.
func (s PeerStats) sub(prev PeerStats) PeerStats {
	return PeerStats{
		Node: s.Node, Up: s.Up,
		MessagesSent:     s.MessagesSent - prev.MessagesSent,
		FramesSent:       s.FramesSent - prev.FramesSent,
		BytesSent:        s.BytesSent - prev.BytesSent,
		MessagesDropped:  s.MessagesDropped - prev.MessagesDropped,
		MessagesReceived: s.MessagesReceived - prev.MessagesReceived,
		FramesReceived:   s.FramesReceived - prev.FramesReceived,
		BytesReceived:    s.BytesReceived - prev.BytesReceived,
	}
}

func TestPeerStatsCountMessagesPerPeer(t *testing.T) {
	a, b, c := startNode(t), startNode(t), startNode(t)
	ibB, ibC := newInbox(t, b), newInbox(t, c)
	// A first message makes the links both ways; once both are up and
	// each side counted what the other sent, only the test's messages
	// flow.
	for _, x := range []struct {
		n  *Node
		ib *Inbox
	}{{b, ibB}, {c, ibC}} {
		require.NoError(t, a.Send(x.ib.Ref(), echo{N: -1}))
		recv[echo](t, x.ib)
		require.Eventually(t, func() bool {
			out, in := peerStatsOf(t, a, x.n.Name()), peerStatsOf(t, x.n, a.Name())
			return out.Up && in.Up && out.MessagesSent == in.MessagesReceived && in.MessagesSent == out.MessagesReceived
		}, waitFor, time.Millisecond, "links between %s and %s up and quiet", a.Name(), x.n.Name())
	}
	names := []string{a.PeerStats()[0].Node, a.PeerStats()[1].Node}
	require.ElementsMatch(t, []string{b.Name(), c.Name()}, names)
	require.Less(t, names[0], names[1], "sorted by node name")

	beforeAB, beforeAC := peerStatsOf(t, a, b.Name()), peerStatsOf(t, a, c.Name())
	beforeBA := peerStatsOf(t, b, a.Name())
	const toB, toC = 100, 7
	for i := range toB {
		require.NoError(t, a.Send(ibB.Ref(), echo{N: i, Text: "to b"}))
		_ = a.PeerStats() // read while sending: the race detector checks it
	}
	for i := range toC {
		require.NoError(t, a.Send(ibC.Ref(), echo{N: i}))
	}
	for range toB {
		recv[echo](t, ibB)
	}
	for range toC {
		recv[echo](t, ibC)
	}
	// The counters move once a frame is handled, which can be just after
	// its messages were delivered.
	var ab, ba PeerStats
	require.Eventually(t, func() bool {
		ab = peerStatsOf(t, a, b.Name()).sub(beforeAB)
		ba = peerStatsOf(t, b, a.Name()).sub(beforeBA)
		return ab.MessagesSent == toB && ba.MessagesReceived == toB && ba.FramesReceived == ab.FramesSent
	}, waitFor, time.Millisecond)
	require.Positive(t, ab.FramesSent)
	require.LessOrEqual(t, ab.FramesSent, uint64(toB))
	require.Greater(t, ab.BytesSent, uint64(toB*len("to b")))
	require.Greater(t, ba.BytesReceived, ab.BytesSent, "received bytes include the frame headers")
	require.Zero(t, ab.MessagesDropped)
	require.Zero(t, ab.MessagesReceived, "b sent a nothing")
	require.Eventually(t, func() bool {
		return peerStatsOf(t, a, c.Name()).sub(beforeAC).MessagesSent == toC
	}, waitFor, time.Millisecond)

	// Messages cut off by a partition are dropped for that peer only.
	dropped := a.Stats().DroppedLinkDown
	a.Block(b.Name(), true, false)
	const cut = 5
	for i := range cut {
		require.NoError(t, a.Send(ibB.Ref(), echo{N: i}))
	}
	a.Block(b.Name(), false, false)
	require.Equal(t, uint64(cut), peerStatsOf(t, a, b.Name()).sub(beforeAB).MessagesDropped)
	require.Zero(t, peerStatsOf(t, a, c.Name()).sub(beforeAC).MessagesDropped)
	require.Equal(t, dropped+cut, a.Stats().DroppedLinkDown)

	// A lost peer is shown down.
	c.Stop()
	require.Eventually(t, func() bool { return !peerStatsOf(t, a, c.Name()).Up }, waitFor, time.Millisecond)
}

func TestMailboxDepth(t *testing.T) {
	n := startNode(t)
	entered, release := make(chan struct{}), make(chan struct{})
	ref, err := n.SpawnNamed("slow", ProcessFunc(func(ctx *Context, msg Message) {
		if msg == "block" {
			close(entered)
			<-release
		}
	}))
	require.NoError(t, err)
	depth := func() int64 {
		d, ok := n.MailboxDepth("slow")
		require.True(t, ok)
		return d
	}
	require.Eventually(t, func() bool { return depth() == 0 }, waitFor, time.Millisecond)

	require.NoError(t, n.Send(ref, "block"))
	<-entered
	require.Zero(t, depth(), "the message being handled is not queued")
	const k = 5
	for range k {
		require.NoError(t, n.Send(ref, "wait"))
	}
	require.Equal(t, int64(k), depth(), "a send is in the mailbox when it returns")
	go func() { _, _ = n.Call(ref, "call", time.Minute) }()
	require.Eventually(t, func() bool { return depth() == k+1 }, waitFor, time.Millisecond, "a call queues too")

	close(release)
	require.Eventually(t, func() bool { return depth() == 0 }, waitFor, time.Millisecond)

	_, ok := n.MailboxDepth("nobody")
	require.False(t, ok)
	require.NoError(t, n.Exit(ref, Normal))
	require.Eventually(t, func() bool { _, ok := n.MailboxDepth("slow"); return !ok }, waitFor, time.Millisecond)
}
