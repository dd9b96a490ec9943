package actor

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countingChild reports every start to ib and crashes on "crash".
func countingChild(name string, starts *atomic.Int32, ib *Inbox) func() Process {
	return func() Process {
		return ProcessFunc(func(ctx *Context, msg Message) {
			switch msg {
			case Started{}:
				starts.Add(1)
				if ib != nil {
					_ = ctx.Send(ib.Ref(), name+" started")
				}
			case "crash":
				panic(name + " crashed")
			case "stop":
				ctx.Stop()
			}
		})
	}
}

func TestOneForOneRestartsOnlyTheCrashedChild(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	var a, b atomic.Int32
	sup, err := n.StartSupervisor("sup", SupervisorSpec{
		Strategy: OneForOne,
		Children: []ChildSpec{
			{Name: "a", Start: countingChild("a", &a, ib)},
			{Name: "b", Start: countingChild("b", &b, ib)},
		},
	})
	require.NoError(t, err)
	recvSet(t, ib, "a started", "b started")

	aRef := Ref{Name: "a", Node: n.Name()}
	require.NoError(t, n.Send(aRef, "crash"))
	require.Equal(t, "a started", recv[string](t, ib))
	require.Equal(t, int32(1), b.Load(), "b untouched")

	infos, err := n.WhichChildren(context.Background(), sup)
	require.NoError(t, err)
	require.Equal(t, []ChildInfo{
		{Name: "a", Ref: aRef, Running: true, Restarts: 1},
		{Name: "b", Ref: Ref{Name: "b", Node: n.Name()}, Running: true, Restarts: 0},
	}, infos)
}

func TestOneForAllRestartsEveryChild(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	var a, b, c atomic.Int32
	_, err := n.StartSupervisor("sup", SupervisorSpec{
		Strategy: OneForAll,
		Children: []ChildSpec{
			{Name: "a", Start: countingChild("a", &a, ib)},
			{Name: "b", Start: countingChild("b", &b, ib)},
			{Name: "c", Start: countingChild("c", &c, ib)},
		},
	})
	require.NoError(t, err)
	recvSet(t, ib, "a started", "b started", "c started")
	require.NoError(t, n.Send(Ref{Name: "b", Node: n.Name()}, "crash"))
	recvSet(t, ib, "a started", "b started", "c started")
	require.Equal(t, []int32{2, 2, 2}, []int32{a.Load(), b.Load(), c.Load()})
}

func TestRestForOneRestartsTheLaterChildren(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	var a, b, c atomic.Int32
	_, err := n.StartSupervisor("sup", SupervisorSpec{
		Strategy: RestForOne,
		Children: []ChildSpec{
			{Name: "a", Start: countingChild("a", &a, ib)},
			{Name: "b", Start: countingChild("b", &b, ib)},
			{Name: "c", Start: countingChild("c", &c, ib)},
		},
	})
	require.NoError(t, err)
	recvSet(t, ib, "a started", "b started", "c started")
	require.NoError(t, n.Send(Ref{Name: "b", Node: n.Name()}, "crash"))
	recvSet(t, ib, "b started", "c started")
	noMessage(t, ib, 50*time.Millisecond)
	require.Equal(t, int32(1), a.Load())
}

func TestTransientAndTemporaryChildren(t *testing.T) {
	n := startNode(t)
	var tr, tmp atomic.Int32
	sup, err := n.StartSupervisor("sup", SupervisorSpec{
		Children: []ChildSpec{
			{Name: "transient", Start: countingChild("transient", &tr, nil), Restart: Transient},
			{Name: "temporary", Start: countingChild("temporary", &tmp, nil), Restart: Temporary},
		},
	})
	require.NoError(t, err)
	eventually(t, func() bool { return tr.Load() == 1 && tmp.Load() == 1 }, "both started")

	// A normal exit of a transient child is final; a crash is not.
	require.NoError(t, n.Send(Ref{Name: "transient", Node: n.Name()}, "crash"))
	eventually(t, func() bool { return tr.Load() == 2 }, "transient restarted after a crash")
	require.NoError(t, n.Send(Ref{Name: "transient", Node: n.Name()}, "stop"))
	// A temporary child is never restarted and is forgotten.
	require.NoError(t, n.Send(Ref{Name: "temporary", Node: n.Name()}, "crash"))
	eventually(t, func() bool {
		infos, err := n.WhichChildren(context.Background(), sup)
		return err == nil && len(infos) == 1 && !infos[0].Running
	}, "transient stopped, temporary forgotten")
	require.Equal(t, int32(2), tr.Load())
	require.Equal(t, int32(1), tmp.Load())
}

func TestCrashLoopGivesUpAndReports(t *testing.T) {
	n := startNode(t)
	ib := newInbox(t, n)
	var starts atomic.Int32
	sup, err := n.StartSupervisor("sup", SupervisorSpec{
		Intensity: 2,
		Period:    time.Minute,
		Children: []ChildSpec{{Name: "flaky", Start: func() Process {
			return ProcessFunc(func(ctx *Context, msg Message) {
				switch msg {
				case Started{}:
					starts.Add(1)
				case "crash":
					panic("asked to crash")
				}
			})
		}}},
	})
	require.NoError(t, err)
	ib.Monitor(sup)
	// Crash the child three times, each incarnation once it started: the
	// first start and two restarts use the budget, the third crash ends
	// the supervisor.
	for i := range 3 {
		eventually(t, func() bool { return starts.Load() == int32(i+1) }, "start %d", i+1)
		require.NoError(t, n.Send(Ref{Name: "flaky", Node: n.Name()}, "crash"))
	}
	d := recv[Down](t, ib)
	require.Equal(t, ReasonError, d.Reason.Kind, "%v", d.Reason)
	require.Contains(t, d.Reason.Detail, "max restart intensity")
	require.Contains(t, d.Reason.Detail, "flaky")
	require.Equal(t, int32(3), starts.Load(), "the first start and two restarts")
	require.False(t, n.Alive(Ref{Name: "flaky", Node: n.Name()}), "children are stopped")
}

func TestDynamicChildren(t *testing.T) {
	n := startNode(t)
	sup, err := n.StartSupervisor("sup", SupervisorSpec{})
	require.NoError(t, err)
	var starts atomic.Int32
	ref, err := n.StartChild(context.Background(), sup, ChildSpec{Name: "dyn", Start: countingChild("dyn", &starts, nil)})
	require.NoError(t, err)
	require.True(t, n.Alive(ref))
	_, err = n.StartChild(context.Background(), sup, ChildSpec{Name: "dyn", Start: countingChild("dyn", &starts, nil)})
	require.ErrorIs(t, err, ErrNameTaken)

	require.NoError(t, n.TerminateChild(context.Background(), sup, "dyn"))
	require.False(t, n.Alive(ref))
	require.ErrorIs(t, n.TerminateChild(context.Background(), sup, "dyn"), ErrNoChild)
	require.Equal(t, int32(1), starts.Load(), "terminating is not a crash: no restart")
}

func TestSupervisorStopsChildrenWhenItStops(t *testing.T) {
	n := startNode(t)
	var starts atomic.Int32
	sup, err := n.StartSupervisor("sup", SupervisorSpec{
		Children: []ChildSpec{{Name: "c", Start: countingChild("c", &starts, nil)}},
	})
	require.NoError(t, err)
	require.NoError(t, n.Exit(sup, Shutdown))
	require.NoError(t, n.Wait(context.Background(), sup))
	require.False(t, n.Alive(Ref{Name: "c", Node: n.Name()}))
}

func TestStartSupervisorFailsOnATakenChildName(t *testing.T) {
	n := startNode(t)
	_, err := n.SpawnNamed("taken", echoServer(Ref{}))
	require.NoError(t, err)
	var starts atomic.Int32
	_, err = n.StartSupervisor("sup", SupervisorSpec{
		Children: []ChildSpec{
			{Name: "first", Start: countingChild("first", &starts, nil)},
			{Name: "taken", Start: countingChild("taken", &starts, nil)},
		},
	})
	require.ErrorIs(t, err, ErrNameTaken)
	eventually(t, func() bool { return !n.Alive(Ref{Name: "first", Node: n.Name()}) }, "the started child is stopped again")
	eventually(t, func() bool { return !n.Alive(Ref{Name: "sup", Node: n.Name()}) }, "the supervisor is gone")

	_, err = n.StartSupervisor("bad", SupervisorSpec{Children: []ChildSpec{{Name: "x"}}})
	require.ErrorIs(t, err, ErrInvalidConfig)
}

// recvSet receives len(want) strings in any order: children start on
// their own goroutines, so their messages race.
func recvSet(t *testing.T, ib *Inbox, want ...string) {
	t.Helper()
	var got []string
	for range want {
		got = append(got, recv[string](t, ib))
	}
	require.ElementsMatch(t, want, got)
}

// A transient child that fails in its Started, every time, is a failure
// each time (not a child that vanished normally): the supervisor restarts
// it until the budget is spent and then gives up.
func TestChildFailingAtStartExhaustsTheBudget(t *testing.T) {
	n := startNode(t)
	watcher := newInbox(t, n)
	var starts atomic.Int32
	_, err := n.StartSupervisor("sup", SupervisorSpec{
		Strategy:  OneForOne,
		Intensity: 3,
		Period:    time.Hour,
		Children: []ChildSpec{{Name: "bad", Restart: Transient, Start: func() Process {
			return ProcessFunc(func(ctx *Context, msg Message) {
				if msg == (Started{}) && starts.Add(1) > 1 { // the first start succeeds
					ctx.Exit(Reason{Kind: ReasonError, Detail: "cannot start"})
				}
			})
		}}},
	})
	require.NoError(t, err)
	watcher.Monitor(Ref{Name: "sup", Node: n.Name()})
	require.NoError(t, n.Exit(Ref{Name: "bad", Node: n.Name()}, Reason{Kind: ReasonKilled}))
	d := recv[Down](t, watcher)
	require.Equal(t, ReasonError, d.Reason.Kind, "the supervisor gave up: %s", d.Reason)
	require.Equal(t, int32(4), starts.Load(), "the first start and three restarts")
}

// SpawnMonitor's Down carries the exit reason of a process that exits at
// once; Monitor after SpawnNamed may find it gone and say noproc.
func TestSpawnMonitorSeesAnImmediateExit(t *testing.T) {
	n := startNode(t)
	downs := make(chan Down, 100)
	parent, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		switch m := msg.(type) {
		case string:
			_, _, err := ctx.SpawnMonitor(m, ProcessFunc(func(ctx *Context, msg Message) {
				if msg == (Started{}) {
					ctx.Exit(Reason{Kind: ReasonError, Detail: "at once"})
				}
			}))
			if err != nil {
				panic(err)
			}
		case Down:
			downs <- m
		}
	}))
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, n.Send(parent, fmt.Sprint("child", i)))
	}
	for range 100 {
		select {
		case d := <-downs:
			require.Equal(t, ReasonError, d.Reason.Kind, "%s: %s", d.Ref, d.Reason)
		case <-time.After(waitFor):
			t.Fatal("a Down did not come")
		}
	}
}
