package actor

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// callDeadline is the deadline of the calls in these tests. It is far
// longer than waitFor, the time a test waits for each call to end: a call
// that waits out its deadline fails the test.
const callDeadline = 3 * waitFor

// blocker is a process that, on "block", says so on entered and waits for
// release, then runs then (which may stop it). It answers "ping" calls.
type blocker struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func spawnBlocker(t *testing.T, n *Node, then func(ctx *Context)) (Ref, *blocker) {
	t.Helper()
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		switch msg {
		case "block":
			close(b.entered)
			<-b.release
			if then != nil {
				then(ctx)
			}
		case "ping":
			_ = ctx.Reply("pong")
		}
	}))
	require.NoError(t, err)
	t.Cleanup(b.unblock)
	return ref, b
}

func (b *blocker) unblock() { b.once.Do(func() { close(b.release) }) }

// block makes the blocker enter its blocking message.
func (b *blocker) block(t *testing.T, n *Node, ref Ref) {
	t.Helper()
	require.NoError(t, n.Send(ref, "block"))
	select {
	case <-b.entered:
	case <-time.After(waitFor):
		t.Fatal("the blocker did not start blocking")
	}
}

// callAsync starts count calls of msg to ref from their own goroutines;
// their errors arrive on the channel (nil for a reply).
func callAsync(n *Node, ref Ref, msg Message, count int) <-chan error {
	errs := make(chan error, count)
	for range count {
		go func() {
			_, err := n.Call(ref, msg, callDeadline)
			errs <- err
		}()
	}
	return errs
}

// collect waits for count call results, each well within callDeadline.
func collect(t *testing.T, errs <-chan error, count int) []error {
	t.Helper()
	out := make([]error, 0, count)
	for range count {
		select {
		case err := <-errs:
			out = append(out, err)
		case <-time.After(waitFor):
			t.Fatalf("only %d of %d calls ended: the others wait for an answer that cannot come", len(out), count)
		}
	}
	return out
}

// queuedCalls counts the calls posted to ref and not yet taken.
func queuedCalls(n *Node, ref Ref) int {
	return countCalls(n, ref, func(p *proc) *callRequest { return p.calls })
}

// countCalls counts the calls of one of the live process ref's lists; -1
// if there is no such process.
func countCalls(n *Node, ref Ref, list func(*proc) *callRequest) int {
	p := n.lookup(ref.Name)
	if p == nil {
		return -1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := 0
	for r := list(p); r != nil; r = r.next {
		c++
	}
	return c
}

// spawnSilent starts a process on n that takes calls and never answers;
// each call it takes is signalled on the channel.
func spawnSilent(t *testing.T, n *Node) (Ref, chan struct{}) {
	t.Helper()
	taken := make(chan struct{}, 1)
	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		if _, ok := ctx.ReplyTo(); ok {
			taken <- struct{}{} // and never reply
		}
	}))
	require.NoError(t, err)
	return ref, taken
}

func waitQueued(t *testing.T, n *Node, ref Ref, want int) {
	t.Helper()
	eventually(t, func() bool { return queuedCalls(n, ref) == want }, "%d calls queued on %s", want, ref)
}

// waitKilled waits until someone asked ref to exit.
func waitKilled(t *testing.T, n *Node, ref Ref) {
	t.Helper()
	p := n.lookup(ref.Name)
	require.NotNil(t, p)
	eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.exitWith != nil }, "%s is asked to exit", ref)
}

func requireAllIs(t *testing.T, errs []error, targets ...error) {
	t.Helper()
	for _, err := range errs {
		ok := false
		for _, target := range targets {
			ok = ok || errors.Is(err, target)
		}
		require.True(t, ok, "got %v, want one of %v", err, targets)
	}
}

// The ways a process ends while calls wait in its mailbox.
var exitWays = []struct {
	name string
	// then runs in the blocked message; kill runs from outside before the
	// message is released (node is the process's node).
	then func(ctx *Context)
	kill func(t *testing.T, node *Node, ref Ref)
	// alsoOK are the errors accepted besides ErrNoProcess, locally and
	// from another node.
	alsoOKLocal, alsoOKRemote []error
	// refusesLocalCalls: once killed, local calls fail before queueing.
	refusesLocalCalls bool
}{
	{
		name: "Stop inside",
		then: func(ctx *Context) { ctx.Stop() },
	},
	{
		name: "Exit from outside",
		kill: func(t *testing.T, node *Node, ref Ref) {
			require.NoError(t, node.Exit(ref, Reason{Kind: ReasonKilled}))
		},
	},
	{
		name: "node Stop",
		kill: func(t *testing.T, node *Node, ref Ref) {
			go node.Stop()
			waitKilled(t, node, ref)
		},
		alsoOKLocal: []error{ErrNodeStopped},
		// The node may close its connections before the answers leave.
		alsoOKRemote:      []error{ErrNodeLost},
		refusesLocalCalls: true,
	},
}

func TestCallsQueuedBehindAnExitFailAtOnce(t *testing.T) {
	const before, after = 10, 10
	for _, way := range exitWays {
		for _, remote := range []bool{false, true} {
			name := way.name + "/local"
			if remote {
				name = way.name + "/remote"
			}
			t.Run(name, func(t *testing.T) {
				host := startNode(t)
				caller := host
				if remote {
					caller = startNode(t)
				}
				ref, b := spawnBlocker(t, host, way.then)
				b.block(t, host, ref)
				errs := callAsync(caller, ref, "ping", before)
				waitQueued(t, host, ref, before)
				if way.kill != nil {
					way.kill(t, host, ref)
					// Calls posted while the process is being killed
					// queue too, and end the same way.
					errs2 := callAsync(caller, ref, "ping", after)
					if remote || !way.refusesLocalCalls {
						waitQueued(t, host, ref, before+after)
					}
					b.unblock()
					got := collect(t, errs, before)
					got = append(got, collect(t, errs2, after)...)
					ok := []error{ErrNoProcess}
					if remote {
						ok = append(ok, way.alsoOKRemote...)
					} else {
						ok = append(ok, way.alsoOKLocal...)
					}
					requireAllIs(t, got, ok...)
				} else {
					b.unblock()
					requireAllIs(t, collect(t, errs, before), ErrNoProcess)
				}
				// Calls after the exit fail at once too.
				_, err := caller.Call(ref, "ping", callDeadline)
				require.True(t, errors.Is(err, ErrNoProcess) || errors.Is(err, ErrNodeStopped) ||
					errors.Is(err, ErrNodeDown) || errors.Is(err, ErrNodeLost), "got %v", err)
			})
		}
	}
}

func TestNoProcessErrorNamesTheProcess(t *testing.T) {
	n := startNode(t)
	ref, b := spawnBlocker(t, n, func(ctx *Context) { ctx.Stop() })
	b.block(t, n, ref)
	errs := callAsync(n, ref, "ping", 1)
	waitQueued(t, n, ref, 1)
	b.unblock()
	err := collect(t, errs, 1)[0]
	require.ErrorIs(t, err, ErrNoProcess)
	require.Contains(t, err.Error(), ref.String())
}

func TestPostToADeadProcessIsRefused(t *testing.T) {
	// The race of a call that looked the process up just before it died:
	// posting to the dead process reports that nobody will take it.
	n := startNode(t)
	ref, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	p := n.lookup(ref.Name)
	require.NotNil(t, p)
	require.NoError(t, n.Exit(ref, Normal))
	<-p.done
	require.False(t, p.postCall(&callRequest{msg: "x", from: ReplyTo{Node: n.Name(), ID: 1}}))
	require.Nil(t, p.calls)
}

func TestCallInFlightEndsWhenItsNodeIsLost(t *testing.T) {
	cases := []struct {
		name string
		lose func(a, b *Node)
	}{
		{"Disconnect", func(a, b *Node) { a.Disconnect(b.Name()) }},
		{"peer stops", func(_, b *Node) { b.Stop() }},
		{"peer restarted", func(a, b *Node) {
			// As if a hello from a new incarnation of b arrived before
			// the loss of the old connection was noticed.
			a.linkFor(b.Name()).onHello(nil, b.incarnation+1, 0)
		}},
		{"partitioned then disconnected", func(a, b *Node) {
			// The request is cut off on its way; only giving up on the
			// peer (what the failure detector does) ends the call.
			a.Disconnect(b.Name())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := startNode(t)
			b, err := StartNode(Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second})
			require.NoError(t, err)
			t.Cleanup(b.Stop)
			silent, taken := spawnSilent(t, b)
			echoRef, err := b.SpawnNamed("echo", echoServer(Ref{}))
			require.NoError(t, err)
			_, err = a.Call(echoRef, "connect", waitFor)
			require.NoError(t, err)

			partitioned := tc.name == "partitioned then disconnected"
			if partitioned {
				a.Block(b.Name(), true, false)
			}
			errs := callAsync(a, silent, "anyone?", 1)
			if partitioned {
				// The request is dropped: wait until it was handed to the link.
				eventually(t, func() bool { return waitingCalls(a, b.Name()) == 1 }, "the call is sent")
				a.Block(b.Name(), false, false)
			} else {
				waitTaken(t, taken, errs)
			}
			tc.lose(a, b)
			err = collect(t, errs, 1)[0]
			if tc.name == "peer stops" {
				// Its node stops the process, which answers the call it
				// took before the connections close, or the connection
				// goes first.
				requireAllIs(t, []error{err}, ErrProcessExited, ErrNodeLost)
				require.Zero(t, waitingCalls(a, b.Name()))
				return
			}
			require.ErrorIs(t, err, ErrNodeLost)
			require.Zero(t, waitingCalls(a, b.Name()))

			// Calls after the reconnect are not failed by the old loss.
			eventually(t, func() bool {
				r, err := a.Call(echoRef, "again", waitFor)
				return err == nil && r == "again"
			}, "a talks to b again")
			errs = callAsync(a, silent, "later", 1)
			waitTaken(t, taken, errs)
			select {
			case err := <-errs:
				t.Fatalf("a call after the reconnect ended: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			a.Disconnect(b.Name())
			require.ErrorIs(t, collect(t, errs, 1)[0], ErrNodeLost)
		})
	}
}

// waitTaken waits until the silent process took the call whose result
// comes on errs.
func waitTaken(t *testing.T, taken <-chan struct{}, errs <-chan error) {
	t.Helper()
	select {
	case <-taken:
	case err := <-errs:
		t.Fatalf("the call ended before it was taken: %v", err)
	case <-time.After(waitFor):
		t.Fatal("the call was not taken")
	}
}

// waitingCalls counts the calls of n waiting for node whose request was
// queued on a connection.
func waitingCalls(n *Node, node string) int {
	c := 0
	for i := range n.calls.shards {
		s := &n.calls.shards[i]
		s.mu.Lock()
		for e := s.nodes[node]; e != nil; e = e.next {
			if e.epoch.Load() != 0 {
				c++
			}
		}
		s.mu.Unlock()
	}
	return c
}

func TestCallToAnUnreachableNodeFailsAtOnce(t *testing.T) {
	a := startNode(t)
	// The connection attempt the request waits for fails: it was never
	// sent, so the call ends with ErrNodeDown, not a timeout.
	_, err := a.Call(Ref{Name: "x", Node: unusedAddress(t)}, "x", callDeadline)
	require.ErrorIs(t, err, ErrNodeDown)
}

func TestCallTableFailsOnlyTheLostEpochsOfANode(t *testing.T) {
	var tab callTable
	tab.init("a")
	old := tab.add("b", nil)
	old.epoch.Store(1)
	cur := tab.add("b", nil)
	cur.epoch.Store(2)
	unsent := tab.add("b", nil)
	other := tab.add("c", nil)
	other.epoch.Store(1)
	local := tab.add("", nil)

	tab.failNode("b", 1, ErrNodeLost)
	require.ErrorIs(t, (<-old.ch).err, ErrNodeLost)
	for _, c := range []*pendingCall{cur, unsent, other, local} {
		require.Empty(t, c.ch, "call %d", c.id)
	}
	tab.failNode("b", 2, ErrNodeDown)
	require.ErrorIs(t, (<-cur.ch).err, ErrNodeDown)
	require.Empty(t, unsent.ch)

	// A removed call is unlinked: failing its node again finds nothing.
	tab.remove(unsent.id)
	unsent.epoch.Store(3)
	tab.failNode("b", 3, ErrNodeLost)
	require.Empty(t, unsent.ch)
	for i := range tab.shards {
		require.Empty(t, tab.shards[i].nodes["b"])
	}
	tab.deliver(other.id, callResult{msg: "ok"})
	require.Equal(t, "ok", (<-other.ch).msg)
	tab.failAll()
	require.ErrorIs(t, (<-local.ch).err, ErrNodeStopped)
}

func TestCallsRacingAnExitAllEnd(t *testing.T) {
	for _, remote := range []bool{false, true} {
		name := "local"
		if remote {
			name = "remote"
		}
		t.Run(name, func(t *testing.T) {
			host := startNode(t)
			caller := host
			if remote {
				caller = startNode(t)
			}
			const rounds, callers = 30, 8
			var replies, noProc atomic.Int64
			for round := range rounds {
				ref, err := host.SpawnNamed(fmt.Sprintf("target-%d", round), echoServer(Ref{}))
				require.NoError(t, err)
				var (
					wg      sync.WaitGroup
					first   = make(chan struct{})
					once    sync.Once
					failure = make(chan error, callers)
				)
				for range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							r, err := caller.Call(ref, echo{N: round}, callDeadline)
							switch {
							case err == nil:
								if r != (echo{N: round}) {
									failure <- fmt.Errorf("wrong reply %v", r)
									return
								}
								replies.Add(1)
								once.Do(func() { close(first) })
							case errors.Is(err, ErrNoProcess):
								noProc.Add(1)
								return
							default:
								failure <- err
								return
							}
						}
					}()
				}
				<-first
				switch round % 3 {
				case 0:
					require.NoError(t, host.Exit(ref, Reason{Kind: ReasonKilled}))
				case 1:
					require.NoError(t, host.Send(ref, "stop"))
				case 2:
					require.NoError(t, host.Send(ref, "crash"))
				}
				wg.Wait()
				close(failure)
				for err := range failure {
					t.Fatalf("round %d: a call ended with %v", round, err)
				}
			}
			require.Equal(t, int64(rounds*callers), noProc.Load())
			t.Logf("%d replies, %d not processed", replies.Load(), noProc.Load())
		})
	}
}

func TestPeerRestartLeavesCallsOnAnUnacknowledgedConnection(t *testing.T) {
	a := startNode(t)
	b, err := StartNode(Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(b.Stop)
	silent, taken := spawnSilent(t, b)
	// b's answers to a are cut, so a's first connection to b stays
	// unacknowledged while its request reaches b.
	b.Block(a.Name(), true, false)
	errs := callAsync(a, silent, "anyone?", 1)
	waitTaken(t, taken, errs)
	l := a.linkFor(b.Name())
	require.Equal(t, linkConnecting, l.currentState())
	// a knew b's incarnation, then hears a hello from a newer one: the
	// connection it is waiting on may well lead to that one.
	l.onHello(nil, b.incarnation, 0)
	l.onHello(nil, b.incarnation+1, 0)
	require.Equal(t, linkConnecting, l.currentState())
	require.Equal(t, 1, waitingCalls(a, b.Name()), "the call on the unacknowledged connection still stands")
	select {
	case err := <-errs:
		t.Fatalf("the call ended: %v", err)
	default:
	}
	// Giving up on b ends it.
	a.Disconnect(b.Name())
	require.ErrorIs(t, collect(t, errs, 1)[0], ErrNodeLost)
}
