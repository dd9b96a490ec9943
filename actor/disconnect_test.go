package actor

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A node's connection state with a peer is one thing in both directions:
// when b loses its link to a, a loses its link to b at once, so a's calls
// to b (whose replies b drops for a while) end with ErrNodeLost and a's
// monitors of b's processes (which b forgot) fire.

// pair is two nodes, a silent process on b that signals each call it
// takes and never answers, and an echo process on b.
type pair struct {
	a, b   *Node
	silent Ref
	echo   Ref
	taken  chan struct{}
}

const testReconnect = 100 * time.Millisecond

func startPair(t *testing.T) *pair {
	t.Helper()
	start := func() *Node {
		n, err := StartNode(Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second, ReconnectInterval: testReconnect})
		require.NoError(t, err)
		t.Cleanup(n.Stop)
		return n
	}
	p := &pair{a: start(), b: start(), taken: make(chan struct{}, 16)}
	var err error
	p.silent, err = p.b.SpawnNamed("silent", ProcessFunc(func(ctx *Context, msg Message) {
		if _, ok := ctx.ReplyTo(); ok {
			p.taken <- struct{}{}
		}
	}))
	require.NoError(t, err)
	p.echo, err = p.b.SpawnNamed("echo", echoServer(Ref{}))
	require.NoError(t, err)
	return p
}

// connect waits until a and b talk both ways.
func (p *pair) connect(t *testing.T) {
	t.Helper()
	eventually(t, func() bool {
		r, err := p.a.Call(p.echo, "hello", waitFor)
		return err == nil && r == "hello"
	}, "a calls b")
	eventually(t, func() bool {
		return p.a.linkFor(p.b.Name()).currentState() == linkUp && p.b.linkFor(p.a.Name()).currentState() == linkUp
	}, "both links are up")
}

// callTaken starts a call from a to the silent process and waits until b
// took it.
func (p *pair) callTaken(t *testing.T) <-chan error {
	t.Helper()
	errs := callAsync(p.a, p.silent, "anyone?", 1)
	waitTaken(t, p.taken, errs)
	return errs
}

// inboundCount counts the connections from peer that n lists as its own.
func inboundCount(n *Node, peer string) int {
	l := n.linkFor(peer)
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.inbound)
}

func TestLossOnOneSideEndsThePeersCallsAndMonitors(t *testing.T) {
	cases := []struct {
		name string
		lose func(p *pair)
	}{
		{"b disconnects a", func(p *pair) { p.b.Disconnect(p.a.Name()) }},
		{"b's connection to a breaks", func(p *pair) {
			l := p.b.linkFor(p.a.Name())
			l.mu.Lock()
			c := l.conn
			l.mu.Unlock()
			c.Close() // b's watch reads it and reports the loss
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startPair(t)
			p.connect(t)
			mon := newInbox(t, p.a)
			mon.MonitorNode(p.b.Name())
			recv[NodeUp](t, mon)
			m := mon.Monitor(p.silent)
			// The monitor item went out before the call on the same
			// connection, so b holds the monitor once it took the call.
			errs := p.callTaken(t)
			require.Equal(t, 1, inboundCount(p.b, p.a.Name()))

			tc.lose(p)

			require.ErrorIs(t, collect(t, errs, 1)[0], ErrNodeLost)
			down := recvUntil[Down](t, mon)
			require.Equal(t, m, down.Monitor)
			require.Equal(t, p.silent, down.Ref)
			require.Equal(t, ReasonNoConnection, down.Reason.Kind)
			require.Equal(t, NodeDown{Node: p.b.Name()}, recvUntil[NodeDown](t, mon))
			require.Zero(t, waitingCalls(p.a, p.b.Name()))
			require.Zero(t, inboundCount(p.b, p.a.Name()))

			// After ReconnectInterval the pair talks again, and a call on
			// the new connections waits for its answer until b gives up
			// on a again.
			require.Equal(t, NodeUp{Node: p.b.Name()}, recvUntil[NodeUp](t, mon))
			p.connect(t)
			errs = p.callTaken(t)
			require.Equal(t, 1, waitingCalls(p.a, p.b.Name()))
			p.b.Disconnect(p.a.Name())
			require.ErrorIs(t, collect(t, errs, 1)[0], ErrNodeLost)
		})
	}
}

func TestDisconnectAcceptedConnectionBelongsToItsEpoch(t *testing.T) {
	// A loss closes the peer's connections heard from before it, not the
	// ones of the peer's next epoch: a late report of an old loss leaves
	// the new connections and their calls alone.
	p := startPair(t)
	p.connect(t)
	lb := p.b.linkFor(p.a.Name())
	lb.mu.Lock()
	oldEpoch := lb.epoch
	lb.mu.Unlock()

	p.b.Disconnect(p.a.Name())
	eventually(t, func() bool { return p.a.linkFor(p.b.Name()).currentState() == linkDown }, "a sees the loss")
	p.connect(t)
	errs := p.callTaken(t)
	require.Equal(t, 1, inboundCount(p.b, p.a.Name()))

	// The old connection's watch, say, reports its end only now.
	lb.lost(oldEpoch, errTestLateLoss)
	require.Equal(t, 1, inboundCount(p.b, p.a.Name()), "the new connection is still listed")
	require.Equal(t, linkUp, p.a.linkFor(p.b.Name()).currentState())
	require.Equal(t, 1, waitingCalls(p.a, p.b.Name()))
	select {
	case err := <-errs:
		t.Fatalf("a call on the new connection ended: %v", err)
	default:
	}
	p.b.Disconnect(p.a.Name())
	require.ErrorIs(t, collect(t, errs, 1)[0], ErrNodeLost)
}

var errTestLateLoss = &lateLoss{}

type lateLoss struct{}

func (*lateLoss) Error() string { return "late report of an old connection's end" }

func TestDisconnectDuringAPartitionKeepsConnectionsOpen(t *testing.T) {
	// A partition test keeps every connection open, as a real partition
	// does: b giving up on a does not tell a. After it heals, the next
	// loss closes them as usual.
	p := startPair(t)
	p.connect(t)
	errs := p.callTaken(t)

	p.b.Block(p.a.Name(), true, true)
	p.b.Disconnect(p.a.Name())
	require.Equal(t, 1, inboundCount(p.b, p.a.Name()), "a's connection stays open and listed")
	require.Equal(t, linkUp, p.a.linkFor(p.b.Name()).currentState())
	require.Equal(t, 1, waitingCalls(p.a, p.b.Name()))

	p.b.Block(p.a.Name(), false, false)
	p.b.linkFor(p.a.Name()).connect()
	eventually(t, func() bool { return p.b.linkFor(p.a.Name()).currentState() == linkUp }, "b reconnects")
	p.b.Disconnect(p.a.Name())
	require.ErrorIs(t, collect(t, errs, 1)[0], ErrNodeLost)
}

// A connection's reader handles monitor requests (and answers them) without
// waiting for the link's lock: on a busy node it once queued behind
// hundreds of senders for every request and fell minutes behind, so calls
// whose replies sat behind it waited out their deadlines.
func TestMonitorRequestsDoNotWaitForTheNodesSenders(t *testing.T) {
	p := startPair(t)
	p.connect(t)
	got := make(chan Message, 1)
	probe, err := p.b.SpawnNamed("probe", ProcessFunc(func(_ *Context, msg Message) {
		if s, ok := msg.(string); ok {
			got <- s
		}
	}))
	require.NoError(t, err)
	// a process on a that monitors b's echo and a name b does not have
	// (b's reader answers that one at once), then sends to b's probe
	downs := make(chan Down, 1)
	_, err = p.a.SpawnNamed("watcher", ProcessFunc(func(ctx *Context, msg Message) {
		switch msg := msg.(type) {
		case string:
			ctx.Monitor(p.echo)
			ctx.Monitor(Ref{Name: "nobody", Node: p.b.Name()})
			_ = ctx.Send(probe, "after the monitor requests")
		case Down:
			downs <- msg
		}
	}))
	require.NoError(t, err)

	l := p.b.linkFor(p.a.Name())
	l.mu.Lock() // a sender of b's, in the middle of queueing
	require.NoError(t, p.a.Send(Ref{Name: "watcher", Node: p.a.Name()}, "go"))
	select {
	case m := <-got:
		require.Equal(t, "after the monitor requests", m)
	case <-time.After(waitFor):
		t.Error("b's reader is stuck behind the link mutex")
	}
	l.mu.Unlock()
	select {
	case d := <-downs:
		require.Equal(t, ReasonNoProc, d.Reason.Kind)
	case <-time.After(waitFor):
		t.Error("the monitor of a missing process never fired")
	}
}

// TestSendersDoNotWaitForEachOther holds a's link to b locked, as a call's
// sender or the pump does for a moment: sends to b go on regardless, and
// what one process sends, calls included, arrives in the order it was
// sent.
func TestSendersDoNotWaitForEachOther(t *testing.T) {
	p := startPair(t)
	p.connect(t)
	got := make(chan string, 64)
	probe, err := p.b.SpawnNamed("probe", ProcessFunc(func(ctx *Context, msg Message) {
		if s, ok := msg.(string); ok {
			got <- s
			if _, isCall := ctx.ReplyTo(); isCall {
				_ = ctx.Reply(s)
			}
		}
	}))
	require.NoError(t, err)

	l := p.a.linkFor(p.b.Name())
	l.mu.Lock()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range 10 {
			_ = p.a.Send(probe, fmt.Sprint("send ", i))
		}
	}()
	select {
	case <-sent:
	case <-time.After(waitFor):
		t.Error("a sender waited for the link's lock")
	}
	l.mu.Unlock()
	<-sent

	// A call's request takes the lock, and must not pass the sends before it.
	_ = p.a.Send(probe, "send 10")
	r, err := p.a.Call(probe, "call", waitFor)
	require.NoError(t, err)
	require.Equal(t, "call", r)
	for i := range 11 {
		require.Equal(t, fmt.Sprint("send ", i), <-got)
	}
	require.Equal(t, "call", <-got)
}
