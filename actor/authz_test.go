package actor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/internal/wire"
)

// sourceProbe reports, for every message it gets, the message and where
// the context says it came from.
type sourceSeen struct {
	Msg    Message
	Node   string
	Authed bool
}

func sourceProbe(report *Inbox) Process {
	return ProcessFunc(func(ctx *Context, msg Message) {
		switch msg.(type) {
		case Started, Terminating:
			return
		}
		_ = ctx.Send(report.Ref(), sourceSeen{Msg: msg, Node: ctx.SourceNode(), Authed: ctx.SourceAuthenticated()})
		if _, ok := ctx.ReplyTo(); ok {
			_ = ctx.Reply("ok")
		}
	})
}

// TestSourceNodeNamesTheSendingNode: a message or call from another node
// is tagged with that node, anything local with this node; only a node
// with credentials calls its peers' names authenticated.
func TestSourceNodeNamesTheSendingNode(t *testing.T) {
	for name, cfg := range map[string]Config{
		"plain":  {},
		"secret": {ClusterSecret: testSecret},
	} {
		t.Run(name, func(t *testing.T) {
			start := func() *Node {
				c := cfg
				c.Address, c.ShutdownTimeout = "127.0.0.1:0", 2*time.Second
				n, err := StartNode(c)
				require.NoError(t, err)
				t.Cleanup(n.Stop)
				return n
			}
			a, b := start(), start()
			require.Equal(t, cfg.ClusterSecret != nil, b.Authenticated())
			ib := newInbox(t, b)
			probe, err := b.Spawn(sourceProbe(ib))
			require.NoError(t, err)
			remoteAuthed := b.Authenticated()

			require.NoError(t, a.Send(probe, "remote send"))
			require.Equal(t, sourceSeen{Msg: "remote send", Node: a.Name(), Authed: remoteAuthed}, recv[sourceSeen](t, ib))
			_, err = a.Call(probe, "remote call", waitFor)
			require.NoError(t, err)
			require.Equal(t, sourceSeen{Msg: "remote call", Node: a.Name(), Authed: remoteAuthed}, recv[sourceSeen](t, ib))

			require.NoError(t, b.Send(probe, "local send"))
			require.Equal(t, sourceSeen{Msg: "local send", Node: b.Name(), Authed: true}, recv[sourceSeen](t, ib))
			_, err = b.Call(probe, "local call", waitFor)
			require.NoError(t, err)
			require.Equal(t, sourceSeen{Msg: "local call", Node: b.Name(), Authed: true}, recv[sourceSeen](t, ib))
			// A remote message right before a local one does not lend
			// the local one its source.
			require.NoError(t, a.Send(probe, "remote again"))
			require.Equal(t, a.Name(), recv[sourceSeen](t, ib).Node)
			b.SendAfter(0, probe, "timer")
			require.Equal(t, sourceSeen{Msg: "timer", Node: b.Name(), Authed: true}, recv[sourceSeen](t, ib))
		})
	}
}

// TestForgedFrameSourceIsWhatTheFrameClaims: without credentials the
// source of a message is the node its frame names, unauthenticated.
func TestForgedFrameSourceIsWhatTheFrameClaims(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	probe, err := n.Spawn(sourceProbe(ib))
	require.NoError(t, err)
	item := []byte{opSend}
	item = wire.AppendString(item, probe.Name)
	item = wire.AppendUvarint(item, 2) // string's tag
	item = append(item, 1)
	item = wire.AppendString(item, "forged")
	n.receiveFrame(appendFrame(nil, "claimed:1", 1, 1, item))
	require.Equal(t, sourceSeen{Msg: "forged", Node: "claimed:1", Authed: false}, recv[sourceSeen](t, ib))
}

// forgedExit is a frame from node src asking the process target to exit.
func forgedExit(src, target string, r Reason) []byte {
	item := []byte{opControl, ctlExit}
	item = wire.AppendString(item, target)
	item = appendReason(item, r)
	return appendFrame(nil, src, 1, 1, item)
}

// TestRemoteExitIsRefusedUnlessAccepted: an exit signal from another node,
// sent by a real node or forged, does not stop a process unless it was
// spawned with AcceptRemoteExits; it is counted, and the process keeps
// serving. Its own node still stops it, and remote monitors still get its
// Down.
func TestRemoteExitIsRefusedUnlessAccepted(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ref, err := b.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	watcher := newInbox(t, a)
	watcher.Monitor(ref)
	waitRemoteMonitor(t, b, ref, 1)

	require.NoError(t, a.Exit(ref, Reason{Kind: ReasonKilled, Detail: "from afar"}))
	eventually(t, func() bool { return b.Stats().RefusedExits == 1 }, "the exit is refused")
	b.receiveFrame(forgedExit(a.Name(), ref.Name, Reason{Kind: ReasonKilled, Detail: "forged"}))
	require.EqualValues(t, 2, b.Stats().RefusedExits)
	require.True(t, b.Alive(ref))
	r, err := a.Call(ref, "still here", waitFor)
	require.NoError(t, err)
	require.Equal(t, "still here", r)
	noMessage(t, watcher, 50*time.Millisecond)

	// Its own node stops it; the remote monitor hears of it.
	require.NoError(t, b.Exit(ref, Reason{Kind: ReasonKilled, Detail: "by its node"}))
	require.Equal(t, Reason{Kind: ReasonKilled, Detail: "by its node"}, recv[Down](t, watcher).Reason)

	// A process that accepts remote exits obeys a forged one too: the
	// option is for processes any peer may stop.
	open, err := b.Spawn(echoServer(Ref{}), AcceptRemoteExits())
	require.NoError(t, err)
	local := newInbox(t, b)
	local.Monitor(open)
	b.receiveFrame(forgedExit("anyone:1", open.Name, Reason{Kind: ReasonKilled}))
	require.Equal(t, ReasonKilled, recv[Down](t, local).Reason.Kind)
	require.EqualValues(t, 2, b.Stats().RefusedExits)
}
