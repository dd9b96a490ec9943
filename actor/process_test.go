package actor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSpawnNamedRejectsDuplicatesAndBadNames(t *testing.T) {
	n := startNode(t)
	ref, err := n.SpawnNamed("svc", echoServer(Ref{}))
	require.NoError(t, err)
	require.Equal(t, Ref{Name: "svc", Node: n.Name()}, ref)

	_, err = n.SpawnNamed("svc", echoServer(Ref{}))
	require.ErrorIs(t, err, ErrNameTaken)

	for _, bad := range []string{"", "$reserved", string(make([]byte, 2000))} {
		_, err = n.SpawnNamed(bad, echoServer(Ref{}))
		require.ErrorIs(t, err, ErrInvalidName, "name %q", bad)
	}

	// Once the process is gone its name is free again.
	require.NoError(t, n.Exit(ref, Normal))
	require.NoError(t, n.Wait(context.Background(), ref))
	_, err = n.SpawnNamed("svc", echoServer(Ref{}))
	require.NoError(t, err)
}

func TestSpawnGeneratesUniqueNames(t *testing.T) {
	n := startNode(t)
	a, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	b, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	require.NotEqual(t, a, b)
	require.True(t, n.Alive(a) && n.Alive(b))
}

func TestLifecycleMessagesComeFirstAndLast(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		_ = ctx.Send(ib.Ref(), msg)
		if msg == "bye" {
			ctx.Stop()
		}
	}))
	require.NoError(t, err)
	require.NoError(t, n.Send(ref, "hello"))
	require.NoError(t, n.Send(ref, "bye"))
	require.NoError(t, n.Send(ref, "never seen"))
	recv[Started](t, ib)
	require.Equal(t, "hello", recv[string](t, ib))
	require.Equal(t, "bye", recv[string](t, ib))
	require.Equal(t, Terminating{Reason: Normal}, recv[Terminating](t, ib))
	noMessage(t, ib, 50*time.Millisecond)
}

func TestLocalSendKeepsOrder(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	ref, err := n.Spawn(echoServer(ib.Ref()))
	require.NoError(t, err)
	const count = 2000
	for i := range count {
		require.NoError(t, n.Send(ref, echo{N: i}))
	}
	for i := range count {
		require.Equal(t, i, recv[echo](t, ib).N)
	}
}

func TestSendToMissingProcessIsDroppedAndCounted(t *testing.T) {
	n := startNode(t)
	require.NoError(t, n.Send(Ref{Name: "nobody", Node: n.Name()}, "x"))
	require.Equal(t, uint64(1), n.Stats().DroppedNoProcess)
}

func TestLocalCall(t *testing.T) {
	n := startNode(t)
	ref, err := n.SpawnNamed("echo", echoServer(Ref{}))
	require.NoError(t, err)

	reply, err := n.Call(ref, echo{N: 7, Text: "hi"}, waitFor)
	require.NoError(t, err)
	require.Equal(t, echo{N: 7, Text: "hi"}, reply)

	_, err = n.Call(Ref{Name: "missing", Node: n.Name()}, "x", waitFor)
	require.ErrorIs(t, err, ErrNoProcess)
}

func TestCallTimesOutWhenNobodyReplies(t *testing.T) {
	n := startNode(t)
	silent, err := n.Spawn(ProcessFunc(func(*Context, Message) {}))
	require.NoError(t, err)
	_, err = n.Call(silent, "hello?", 30*time.Millisecond)
	require.ErrorIs(t, err, ErrTimeout)
}

// TestCallWithAnEndedContextSendsNothing checks that a call whose context
// has ended fails with ErrTimeout every time and never reaches the
// process, however fast the process would have answered.
func TestCallWithAnEndedContextSendsNothing(t *testing.T) {
	n := startNode(t)
	var got atomic.Int64
	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		if msg == "x" {
			got.Add(1)
		}
		_ = ctx.Reply(msg)
	}))
	require.NoError(t, err)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for range 200 {
		_, err := n.CallContext(ended, ref, "x")
		require.ErrorIs(t, err, ErrTimeout)
		require.ErrorIs(t, err, context.Canceled)
	}
	reply, err := n.Call(ref, "after", waitFor)
	require.NoError(t, err)
	require.Equal(t, "after", reply)
	require.Zero(t, got.Load(), "a call with an ended context reached the process")
}

func TestDeferredReply(t *testing.T) {
	n := startNode(t)
	// The server keeps the caller and answers when a second message comes.
	var pending ReplyTo
	asked := make(chan struct{})
	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		switch msg {
		case "ask":
			pending, _ = ctx.ReplyTo()
			close(asked)
		case "answer":
			_ = ctx.Node().Reply(pending, "later")
		}
	}))
	require.NoError(t, err)
	done := make(chan Message, 1)
	go func() {
		r, err := n.Call(ref, "ask", waitFor)
		assert.NoError(t, err)
		done <- r
	}()
	// Answer only once the call is held: sent earlier (a loaded machine
	// may run the caller late), the answer would find nobody to reply to.
	select {
	case <-asked:
	case <-time.After(waitFor):
		t.Fatal("the call never arrived")
	}
	require.NoError(t, n.Send(ref, "answer"))
	select {
	case r := <-done:
		require.Equal(t, "later", r)
	case <-time.After(waitFor):
		t.Fatal("no reply")
	}
}

func TestCrashEndsTheProcessWithACrashReason(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	ref, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	mon := ib.Monitor(ref)
	require.NoError(t, n.Send(ref, "crash"))
	d := recv[Down](t, ib)
	require.Equal(t, mon, d.Monitor)
	require.Equal(t, ref, d.Ref)
	require.Equal(t, ReasonCrash, d.Reason.Kind)
	require.Contains(t, d.Reason.Detail, "asked to crash")
	require.True(t, d.Reason.Abnormal())
	require.False(t, n.Alive(ref))
}

func TestExitStopsAProcessWithTheGivenReason(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	ref, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	ib.Monitor(ref)
	require.NoError(t, n.Exit(ref, Reason{Kind: ReasonKilled, Detail: "test"}))
	require.Equal(t, Reason{Kind: ReasonKilled, Detail: "test"}, recv[Down](t, ib).Reason)
	require.ErrorIs(t, n.Exit(ref, Normal), ErrNoProcess)
}

func TestMonitorDeliversExactlyOneDown(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	ref, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	m1 := ib.Monitor(ref)
	m2 := ib.Monitor(ref)
	require.NotEqual(t, m1, m2)
	require.NoError(t, n.Send(ref, "stop"))
	got := map[MonitorRef]Reason{}
	for range 2 {
		d := recv[Down](t, ib)
		got[d.Monitor] = d.Reason
	}
	require.Equal(t, map[MonitorRef]Reason{m1: Normal, m2: Normal}, got)
	noMessage(t, ib, 50*time.Millisecond)
}

func TestMonitorOfMissingProcessIsNoProc(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	missing := Ref{Name: "ghost", Node: n.Name()}
	ib.Monitor(missing)
	d := recv[Down](t, ib)
	require.Equal(t, missing, d.Ref)
	require.Equal(t, NoProc, d.Reason)
}

func TestDemonitorSuppressesDown(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	ref, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	m := ib.Monitor(ref)
	require.True(t, ib.Demonitor(m))
	require.False(t, ib.Demonitor(m), "second demonitor")
	require.NoError(t, n.Send(ref, "stop"))
	require.NoError(t, n.Wait(context.Background(), ref))
	noMessage(t, ib, 50*time.Millisecond)
}

func TestDemonitorDropsADownAlreadyInTheMailbox(t *testing.T) {
	n := startNode(t)
	target, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	result := make(chan Message, 2)
	var mon MonitorRef
	watcher, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		switch m := msg.(type) {
		case Started:
			mon = ctx.Monitor(target)
		case string:
			// Kill the target and wait until it is gone: its Down is now
			// queued behind this message. Demonitor must still win.
			_ = ctx.Node().Exit(target, Normal)
			_ = ctx.Node().Wait(context.Background(), target)
			result <- ctx.Demonitor(mon)
		case Down:
			result <- m
		}
	}))
	require.NoError(t, err)
	require.NoError(t, n.Send(watcher, "kill and demonitor"))
	require.Equal(t, true, <-result)
	select {
	case m := <-result:
		t.Fatalf("Down delivered after Demonitor: %+v", m)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestMonitorsOfAnExitedWatcherAreReleased(t *testing.T) {
	n := startNode(t)
	target, err := n.Spawn(echoServer(Ref{}))
	require.NoError(t, err)
	watcher, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		if _, ok := msg.(Started); ok {
			ctx.Monitor(target)
		}
	}))
	require.NoError(t, err)
	p := n.lookup(target.Name)
	eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.watchers.Len() == 1 }, "monitor registered")
	require.NoError(t, n.Exit(watcher, Normal))
	require.NoError(t, n.Wait(context.Background(), watcher))
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Zero(t, p.watchers.Len())
}

func TestTimerDeliversAndCancelIsExact(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	var cancelled atomic.Bool
	_, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		switch msg {
		case Started{}:
			ctx.SendAfter(time.Millisecond, "tick")
			// This timer fires while we sleep, so its message is already
			// in the mailbox when we cancel it: it must still not arrive.
			tr := ctx.SendAfter(0, "cancelled")
			time.Sleep(20 * time.Millisecond)
			cancelled.Store(ctx.CancelTimer(tr))
		default:
			_ = ctx.Send(ib.Ref(), msg)
		}
	}))
	require.NoError(t, err)
	require.Equal(t, "tick", recv[string](t, ib))
	require.True(t, cancelled.Load())
	noMessage(t, ib, 50*time.Millisecond)
}

func TestNodeSendAfterAndCancel(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	n.SendAfter(time.Millisecond, ib.Ref(), "soon")
	require.Equal(t, "soon", recv[string](t, ib))
	tm := n.SendAfter(time.Hour, ib.Ref(), "never")
	require.True(t, tm.Cancel())
}

func TestStopExitsEveryProcessWithShutdown(t *testing.T) {
	watcherNode := startNode(t)
	ib := newInbox(t, watcherNode)
	n, err := StartNode(Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		if m, ok := msg.(Terminating); ok {
			_ = ctx.Send(ib.Ref(), m.Reason.String())
		}
	}))
	require.NoError(t, err)
	ib.Monitor(ref)
	p := n.lookup(ref.Name)
	eventually(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.watchers.Len() == 1 }, "remote monitor registered")
	n.Stop()
	n.Stop() // idempotent
	// The remote watcher hears shutdown, or noconnection if the node was
	// gone before the Down could leave; either way exactly one Down.
	var reasons []string
	var down *Down
	for down == nil {
		switch m := recvUntil[any](t, ib).(type) {
		case string:
			reasons = append(reasons, m)
		case Down:
			down = &m
		}
	}
	require.Contains(t, []ReasonKind{ReasonShutdown, ReasonNoConnection}, down.Reason.Kind)
	if down.Reason.Kind == ReasonShutdown {
		require.Equal(t, []string{"shutdown"}, reasons, "the process saw Terminating{shutdown}")
	}
	_, err = n.Spawn(echoServer(Ref{}))
	require.ErrorIs(t, err, ErrNodeStopped)
	_, err = n.Call(ref, "x", time.Second)
	require.ErrorIs(t, err, ErrNodeStopped)
}

// Nodes of one OS process share protoactor's ActorSystem. Stopping one
// must leave the others working and take its own actors out of the shared
// registry, or a process that starts and stops nodes would leak them.
func TestNodesShareTheActorSystemAndStopAlone(t *testing.T) {
	stays := startNode(t)
	goes, err := StartNode(Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	require.Same(t, stays.system, goes.system)
	gone, err := goes.SpawnNamed("echo", echoServer(Ref{}))
	require.NoError(t, err)
	pid := goes.lookup(gone.Name).pid
	_, ok := goes.system.ProcessRegistry.GetLocal(pid.Id)
	require.True(t, ok, "the process is in the shared registry")
	goes.Stop()
	eventually(t, func() bool {
		_, ok := stays.system.ProcessRegistry.GetLocal(pid.Id)
		return !ok
	}, "the stopped node's process left the shared registry")

	ref, err := stays.SpawnNamed("echo", echoServer(Ref{}))
	require.NoError(t, err)
	reply, err := stays.Call(ref, echo{N: 1, Text: "still here"}, waitFor)
	require.NoError(t, err)
	require.Equal(t, echo{N: 1, Text: "still here"}, reply)
}

func TestStartFailsWhenTheAddressIsInUse(t *testing.T) {
	n := startNode(t)
	_, err := StartNode(Config{Address: n.Name()})
	require.ErrorIs(t, err, ErrStart)
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{Address: "nohost"},
		{Address: ":7000"},
		{Address: "127.0.0.1:99999"},
		{Address: "0.0.0.0:7000"},
		{Address: "127.0.0.1:0", MaxFrameBytes: 100},
		{Address: "127.0.0.1:0", MaxMessageBytes: 2 << 30},
		{Address: "127.0.0.1:0", LinkQueueBytes: 1024, MaxMessageBytes: 4096},
		{Address: "127.0.0.1:0", ReconnectInterval: -1},
	} {
		err := c.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", c)
	}
	require.NoError(t, Config{Address: "127.0.0.1:0"}.Validate())
}

func TestReplyOutsideACallIsAnError(t *testing.T) {
	n := startNode(t)
	errs := make(chan error, 1)
	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		if msg == "x" {
			errs <- ctx.Reply("nobody asked")
		}
	}))
	require.NoError(t, err)
	require.NoError(t, n.Send(ref, "x"))
	require.True(t, errors.Is(<-errs, ErrNoProcess))
}

// Wait covers a process's last steps: its name is freed before its
// Terminating runs (so a supervisor may register it again at once), but
// Wait returns only once the exit is complete. A supervisor restarting a
// child relies on it: the old one must be done with its files first.
func TestWaitCoversTerminating(t *testing.T) {
	n := startNode(t)
	entered, release := make(chan struct{}), make(chan struct{})
	ref, err := n.SpawnNamed("slow", ProcessFunc(func(ctx *Context, msg Message) {
		if _, ok := msg.(Terminating); ok {
			close(entered)
			<-release
		}
	}))
	require.NoError(t, err)
	require.NoError(t, n.Exit(ref, Shutdown))
	<-entered
	require.False(t, n.Alive(ref), "the name is free while Terminating runs")
	done := make(chan error, 1)
	go func() { done <- n.Wait(context.Background(), ref) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned (%v) while the process was still terminating", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, n.Wait(context.Background(), ref), "a finished process: at once")
}
