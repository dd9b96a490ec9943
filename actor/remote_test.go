package actor

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRemoteSendKeepsOrderAndRoundTripsMessages(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ib := newInbox(t, b)
	const count = 5000
	for i := range count {
		require.NoError(t, a.Send(ib.Ref(), echo{N: i, Text: "x"}))
	}
	for i := range count {
		require.Equal(t, echo{N: i, Text: "x"}, recv[echo](t, ib))
	}
	require.NoError(t, a.Send(ib.Ref(), []byte("raw")))
	require.Equal(t, []byte("raw"), recv[[]byte](t, ib))
	require.NoError(t, a.Send(ib.Ref(), "text"))
	require.Equal(t, "text", recv[string](t, ib))
}

func TestRemoteSendOfUnregisteredTypeFails(t *testing.T) {
	a, b := startNode(t), startNode(t)
	type local struct{ X int }
	err := a.Send(Ref{Name: "x", Node: b.Name()}, local{X: 1})
	require.ErrorIs(t, err, ErrNotSerializable)
	_, err = a.Call(Ref{Name: "x", Node: b.Name()}, local{X: 1}, time.Second)
	require.ErrorIs(t, err, ErrNotSerializable)
}

func TestRemoteMessageTooLarge(t *testing.T) {
	a, err := StartNode(Config{Address: "127.0.0.1:0", MaxMessageBytes: 1024})
	require.NoError(t, err)
	defer a.Stop()
	b := startNode(t)
	err = a.Send(Ref{Name: "x", Node: b.Name()}, make([]byte, 2048))
	require.ErrorIs(t, err, ErrMessageTooLarge)
}

func TestRemoteCall(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ref, err := b.SpawnNamed("echo", echoServer(Ref{}))
	require.NoError(t, err)
	reply, err := a.Call(ref, echo{N: 42, Text: "ping"}, waitFor)
	require.NoError(t, err)
	require.Equal(t, echo{N: 42, Text: "ping"}, reply)

	_, err = a.Call(Ref{Name: "missing", Node: b.Name()}, "x", waitFor)
	require.ErrorIs(t, err, ErrNoProcess)

	silent, err := b.Spawn(ProcessFunc(func(*Context, Message) {}))
	require.NoError(t, err)
	_, err = a.Call(silent, "x", 50*time.Millisecond)
	require.ErrorIs(t, err, ErrTimeout)
}

func TestRemoteCallWithUnserializableReply(t *testing.T) {
	a, b := startNode(t), startNode(t)
	type local struct{}
	errs := make(chan error, 1)
	ref, err := b.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		if _, ok := ctx.ReplyTo(); ok {
			errs <- ctx.Reply(local{})
		}
	}))
	require.NoError(t, err)
	_, err = a.Call(ref, "x", 100*time.Millisecond)
	require.ErrorIs(t, err, ErrTimeout)
	require.ErrorIs(t, <-errs, ErrNotSerializable)
}

func TestRemoteMonitorDown(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ib := newInbox(t, a)
	ref, err := b.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	mon := ib.Monitor(ref)
	waitRemoteMonitor(t, b, ref, 1)
	require.NoError(t, a.Send(ref, "crash"))
	d := recv[Down](t, ib)
	require.Equal(t, mon, d.Monitor)
	require.Equal(t, ref, d.Ref)
	require.Equal(t, ReasonCrash, d.Reason.Kind)
	noMessage(t, ib, 50*time.Millisecond)
}

func TestRemoteMonitorOfMissingProcessIsNoProc(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ib := newInbox(t, a)
	ghost := Ref{Name: "ghost", Node: b.Name()}
	ib.Monitor(ghost)
	d := recv[Down](t, ib)
	require.Equal(t, ghost, d.Ref)
	require.Equal(t, NoProc, d.Reason)
}

func TestRemoteDemonitor(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ib := newInbox(t, a)
	ref, err := b.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	m := ib.Monitor(ref)
	waitRemoteMonitor(t, b, ref, 1)
	require.True(t, ib.Demonitor(m))
	waitRemoteMonitor(t, b, ref, 0)
	require.NoError(t, b.Exit(ref, Normal))
	noMessage(t, ib, 100*time.Millisecond)
}

func TestRemoteExit(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ib := newInbox(t, b)
	ref, err := b.Spawn(echoServer(Ref{}), AcceptRemoteExits())
	require.NoError(t, err)
	ib.Monitor(ref)
	require.NoError(t, a.Exit(ref, Reason{Kind: ReasonKilled, Detail: "from afar"}))
	require.Equal(t, Reason{Kind: ReasonKilled, Detail: "from afar"}, recv[Down](t, ib).Reason)
}

func TestDisconnectFiresNoConnection(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ib := newInbox(t, a)
	ref, err := b.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	ib.Monitor(ref)
	waitRemoteMonitor(t, b, ref, 1)
	a.Disconnect(b.Name())
	d := recv[Down](t, ib)
	require.Equal(t, NoConnection, d.Reason)
	// b forgets a's monitor once a's connection to it is gone... and a can
	// talk to b again after the reconnect interval.
	eventually(t, func() bool {
		_ = a.Send(ref, "still there?")
		r, err := a.Call(ref, "ping", 200*time.Millisecond)
		return err == nil && r == "ping"
	}, "a reconnects to b")
}

func TestNodeMonitorUpDownAndBackUp(t *testing.T) {
	a := startNode(t)
	b, err := StartNode(Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	addr := b.Name()
	ib := newInbox(t, a)
	ib.MonitorNode(addr)
	require.Equal(t, NodeUp{Node: addr}, recv[NodeUp](t, ib))

	ref, err := b.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	ib.Monitor(ref)
	waitRemoteMonitor(t, b, ref, 1)
	b.Stop()
	// The process's Down (shutdown, or noconnection if the connection went
	// first) and the NodeDown arrive in either order.
	gotDown, gotNodeDown := false, false
	for !gotDown || !gotNodeDown {
		switch m := recvUntil[any](t, ib).(type) {
		case Down:
			require.False(t, gotDown, "one Down only")
			require.Contains(t, []ReasonKind{ReasonShutdown, ReasonNoConnection}, m.Reason.Kind)
			gotDown = true
		case NodeDown:
			require.Equal(t, addr, m.Node)
			gotNodeDown = true
		default:
			t.Fatalf("unexpected %T", m)
		}
	}

	// A new node on the same address: the monitor reports it up again.
	b2 := startNodeAt(t, addr)
	require.Equal(t, NodeUp{Node: addr}, recvUntil[NodeUp](t, ib))
	_ = b2
}

func TestNodeMonitorOfUnreachableNodeReportsDown(t *testing.T) {
	a := startNode(t)
	ib := newInbox(t, a)
	dead := unusedAddress(t)
	ib.MonitorNode(dead)
	require.Equal(t, NodeDown{Node: dead}, recv[NodeDown](t, ib))
	// Repeated failed attempts are not reported again.
	noMessage(t, ib, 3*a.cfg.ReconnectInterval)
	ib.DemonitorNode(dead)
}

func TestSendToUnreachableNodeReturnsAtOnceAndStaysBounded(t *testing.T) {
	a, err := StartNode(Config{Address: "127.0.0.1:0", LinkQueueBytes: 64 << 10, MaxMessageBytes: 1024})
	require.NoError(t, err)
	defer a.Stop()
	dead := Ref{Name: "x", Node: unusedAddress(t)}
	payload := make([]byte, 1000)
	for range 10000 {
		require.NoError(t, a.Send(dead, payload))
	}
	// Nothing was delivered, and at most the queue bound is held.
	eventually(t, func() bool {
		s := a.Stats()
		return s.DroppedLinkDown+s.DroppedQueueFull >= 10000-100
	}, "messages to the dead node are dropped, not held: %+v", a.Stats())
	l := a.linkFor(dead.Node)
	l.mu.Lock()
	queued := l.queued
	l.mu.Unlock()
	require.LessOrEqual(t, queued, 64<<10)
}

func TestPeerThatStopsReadingCannotGrowOurMemory(t *testing.T) {
	// A listener that accepts and never reads stands for a frozen node.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	const queue = 256 << 10
	a, err := StartNode(Config{Address: "127.0.0.1:0", LinkQueueBytes: queue, MaxMessageBytes: 64 << 10})
	require.NoError(t, err)
	defer a.Stop()
	frozen := Ref{Name: "x", Node: ln.Addr().String()}
	payload := make([]byte, 32<<10)
	// 64 MiB in total, far beyond socket buffers and the queue.
	for range 2048 {
		require.NoError(t, a.Send(frozen, payload))
	}
	eventually(t, func() bool { return a.Stats().DroppedQueueFull > 0 }, "the full queue drops")
	l := a.linkFor(frozen.Node)
	l.mu.Lock()
	queued := l.queued
	l.mu.Unlock()
	require.LessOrEqual(t, queued, queue)
	// The failure detector would now disconnect it: that frees everything.
	a.Disconnect(frozen.Node)
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Zero(t, l.queued)
}

func TestGarbageFromAPeerIsDroppedNotFatal(t *testing.T) {
	a := startNode(t)
	ib := newInbox(t, a)
	for _, frame := range [][]byte{
		nil,
		{0xFF},
		{frameVersion},
		appendFrame(nil, "peer:1", 1, 3, []byte{opSend, 200, 1}),
		appendFrame(nil, "peer:1", 1, 1, []byte{opControl, 99}),
	} {
		a.receiveFrame(frame)
	}
	require.Positive(t, a.Stats().DroppedBadMessage)
	// A frame for the inbox with an unknown tag is dropped; a good one after it arrives.
	bad := []byte{opSend}
	bad = append(bad, byte(len(ib.Ref().Name)))
	bad = append(bad, ib.Ref().Name...)
	bad = append(bad, 0xE7, 0x07, 1, 0) // tag 999 (unregistered), version 1, empty payload
	a.receiveFrame(appendFrame(nil, "peer:1", 1, 1, bad))
	good, err := appendMessage([]byte{opSend, byte(len(ib.Ref().Name))}, mustCodec(t, "ok"), "ok")
	require.NoError(t, err)
	good = append(good[:2], append([]byte(ib.Ref().Name), good[2:]...)...)
	a.receiveFrame(appendFrame(nil, "peer:1", 1, 1, good))
	require.Equal(t, "ok", recv[string](t, ib))
}

func TestStrayConnectionIsRejected(t *testing.T) {
	a := startNode(t)
	c, err := net.Dial("tcp", a.Name())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "the node closes the connection")
}

func mustCodec(t testing.TB, msg any) *codecEntry {
	e, err := codecFor(msg)
	require.NoError(t, err)
	return e
}

func waitRemoteMonitor(t testing.TB, n *Node, ref Ref, want int) {
	t.Helper()
	p := n.lookup(ref.Name)
	require.NotNil(t, p)
	eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.watchers.Len() == want }, "%d monitors on %s", want, ref)
}

func startNodeAt(t testing.TB, addr string) *Node {
	t.Helper()
	var n *Node
	// The old listener's port may take a moment to be free again.
	eventually(t, func() bool {
		var err error
		n, err = StartNode(Config{Address: addr})
		return err == nil
	}, "start a node at %s", addr)
	t.Cleanup(n.Stop)
	return n
}

func unusedAddress(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestBlockCutsOneDirection(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ibA, ibB := newInbox(t, a), newInbox(t, b)
	require.NoError(t, a.Send(ibB.Ref(), "before"))
	require.Equal(t, "before", recv[string](t, ibB))

	a.Block(b.Name(), true, false) // a cannot reach b; b still reaches a
	require.NoError(t, a.Send(ibB.Ref(), "lost"))
	require.NoError(t, b.Send(ibA.Ref(), "b to a"))
	require.Equal(t, "b to a", recv[string](t, ibA))
	noMessage(t, ibB, 100*time.Millisecond)

	b.Block(a.Name(), false, true) // b also refuses what a sends
	a.Block(b.Name(), false, false)
	require.NoError(t, a.Send(ibB.Ref(), "still lost"))
	noMessage(t, ibB, 100*time.Millisecond)

	b.Block(a.Name(), false, false) // healed
	require.NoError(t, a.Send(ibB.Ref(), "after"))
	require.Equal(t, "after", recv[string](t, ibB))
}
