package wal

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal/walfs"
)

// crashMsg makes a crashable process panic.
type crashMsg struct{}

// crashable is the WAL process with a way to make it panic in Receive,
// for tests only.
type crashable struct{ actor.Process }

func (c crashable) Receive(ctx *actor.Context, msg actor.Message) {
	if _, ok := msg.(crashMsg); ok {
		panic("test: crash")
	}
	c.Process.Receive(ctx, msg)
}

// A WAL that panics while a batch is being synced is restarted by its
// supervisor from its files: the restart waits for the batch (its exit is
// announced only once the flusher closed the file), every acknowledged
// entry is in the new WAL's mem tables, the recovered files go to the
// segment writer again, and the old Writers fail with ErrClosed instead of
// writing to the new WAL.
func TestSupervisedWALRestartsAfterPanic(t *testing.T) {
	n := startNode(t)
	segs, server := inbox(t, n), inbox(t, n)
	fs := walfs.NewMem()
	cfg := testConfig(fs)
	opts := StartOptions{SegmentWriter: segs.Ref()}

	var mu sync.Mutex
	var current *WAL
	startErrs := make(chan error, 10)
	sup, err := n.StartSupervisor("wal_sup", actor.SupervisorSpec{
		Strategy: actor.OneForOne,
		Children: []actor.ChildSpec{{Name: DefaultName, Start: func() actor.Process {
			w, p, err := Open(n, cfg, opts)
			if err != nil {
				startErrs <- err
				return nil
			}
			mu.Lock()
			current = w
			mu.Unlock()
			return crashable{p}
		}}},
	})
	require.NoError(t, err)
	mu.Lock()
	old := current
	mu.Unlock()

	wr, err := old.Register("srv1", server.Ref())
	require.NoError(t, err)
	payload := func(i uint64) []byte { return []byte{byte(i), 'x'} }
	var acked uint64
	for i := uint64(1); i <= 5; i++ {
		require.NoError(t, wr.Write(Entry{Index: i, Term: 1, Payload: payload(i)}))
		acked = receiveWritten(t, server, acked)
	}
	require.Equal(t, uint64(5), acked)

	// Hold the next sync of a WAL file (not of the spare the WAL may be
	// preparing) until the process has crashed.
	syncing, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fs.SetFault(func(op walfs.Op, name string) error {
		if op == walfs.OpSync && strings.HasSuffix(name, fileSuffix) {
			once.Do(func() {
				close(syncing)
				<-release
			})
		}
		return nil
	})
	watcher := inbox(t, n)
	watcher.Monitor(old.Ref())
	require.NoError(t, wr.Write(Entry{Index: 6, Term: 1, Payload: payload(6)}))
	<-syncing
	require.NoError(t, n.Send(old.Ref(), crashMsg{}))
	require.Eventually(t, old.Closed, 10*time.Second, time.Millisecond, "the crashed WAL closes its writers")
	require.ErrorIs(t, wr.Write(Entry{Index: 7, Term: 1, Payload: payload(7)}), ErrClosed)
	// Its exit waits for the flusher, which waits for the sync: nobody
	// (the supervisor least of all) hears of it before. A broken wait
	// lets the exit through at once; a correct one never does, whatever
	// the bound.
	select {
	case m := <-watcher.C():
		require.Failf(t, "the exit was announced while its batch was being synced", "%#v", m)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	down, ok := receive(t, watcher).(actor.Down)
	require.True(t, ok)
	require.Equal(t, actor.ReasonCrash, down.Reason.Kind)

	require.Eventually(t, func() bool {
		kids, err := n.WhichChildren(context.Background(), sup)
		return err == nil && len(kids) == 1 && kids[0].Running && kids[0].Restarts == 1
	}, 10*time.Second, time.Millisecond, "the supervisor restarts the WAL")
	require.Empty(t, startErrs)
	mu.Lock()
	w := current
	mu.Unlock()
	require.NotSame(t, old, w)
	require.False(t, w.Closed())

	// The batch in flight at the crash was finished before recovery read
	// the file: entry 6 is there, whole, never acknowledged, and harmless.
	last, _, ok := w.Last("srv1")
	require.True(t, ok)
	require.Equal(t, uint64(6), last)
	view := w.Mem("srv1").View()
	for i := uint64(1); i <= 6; i++ {
		e, presence := view.Get(i)
		require.Equal(t, Present, presence, "entry %d", i)
		require.Equal(t, payload(i), e.Payload, "entry %d", i)
	}
	cf, ok := receive(t, segs).(*ClosedFile)
	require.True(t, ok, "the restarted WAL hands its recovered file to the segment writer")
	require.Equal(t, uint64(1), cf.Seq)

	wr2, err := w.Register("srv1", server.Ref())
	require.NoError(t, err)
	require.NoError(t, wr2.Write(Entry{Index: 7, Term: 1, Payload: payload(7)}))
	for {
		m := receive(t, server)
		if wr, ok := m.(Written); ok && wr.To == 7 {
			break
		}
		// Nothing else may come: the old WAL's answer to entry 6 was lost
		// with it, and a failure would be a bug.
		require.Failf(t, "unexpected notification", "%#v", m)
	}
	require.NoError(t, n.Exit(sup, actor.Shutdown))
	require.NoError(t, n.Wait(context.Background(), sup))
	require.False(t, errors.Is(w.Err(), ErrFailed))
}
