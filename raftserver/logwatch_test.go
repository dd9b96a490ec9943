package raftserver

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

// readCommands reads n commands from w, and every entry before them,
// requiring each index once and in order from want.
func readCommands(t *testing.T, w *LogWatcher, want uint64, n int) (cmds []string, next uint64) {
	t.Helper()
	for len(cmds) < n {
		select {
		case e, ok := <-w.C:
			require.True(t, ok, "the watch ended: %v", w.Err())
			require.Equal(t, want, e.Index, "every index once, in order")
			want++
			if e.Kind == LogCommand {
				cmds = append(cmds, string(e.Command))
			}
		case <-time.After(waitFor):
			t.Fatalf("no entry %d within %v", want, waitFor)
		}
	}
	return cmds, want
}

func TestWatchLogAcrossALeaderChange(t *testing.T) {
	c := startFixedCluster(t, 3)
	leader, err := c.systems[0].WaitForLeader(c.ctx(), c.members[0])
	require.NoError(t, err)
	// The watcher's node, the watched follower's and the leader's are
	// three different nodes.
	var followers []ServerID
	for _, m := range c.members {
		if m != leader {
			followers = append(followers, m)
		}
	}
	watched, s := followers[0], c.systemOf(followers[1])
	w, err := s.WatchLog(c.ctx(), watched, 1, 8)
	require.NoError(t, err)
	defer w.Close()

	var sent []string
	for i := range 40 {
		cmd := fmt.Sprintf("set k%d v%d", i, i)
		_, _, err := s.ProcessCommand(c.ctx(), leader, []byte(cmd))
		require.NoError(t, err)
		sent = append(sent, cmd)
	}
	got, next := readCommands(t, w, 1, 40)
	require.Equal(t, sent, got)

	// The leader goes; a new one takes commands; the watch goes on.
	old := c.index(leader)
	require.NoError(t, c.systems[old].Stop())
	c.systems[old] = nil
	via := watched
	for i := 40; i < 80; i++ {
		cmd := fmt.Sprintf("set k%d v%d", i, i)
		var err error
		for attempt := 0; attempt < 50; attempt++ {
			if _, via, err = s.ProcessCommand(c.ctx(), via, []byte(cmd)); err == nil {
				break
			}
			via = watched
		}
		require.NoError(t, err)
		sent = append(sent, cmd)
	}
	got, _ = readCommands(t, w, next, 40)
	require.Equal(t, sent[40:], got, "nothing missed or repeated")
	w.Close()
	_, ok := <-w.C
	require.False(t, ok, "Close closes C")
	require.NoError(t, w.Err())
}

// The server sends no more than the window ahead of the acknowledgements.
func TestWatchLogBackPressure(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	for i := range 30 {
		_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte(fmt.Sprintf("set k%d v", i)))
		require.NoError(t, err)
	}
	// Two watchers, on two nodes: each has its own window.
	watch := func(sys *System) *actor.Inbox {
		ib, err := sys.Node().NewInbox()
		require.NoError(t, err)
		t.Cleanup(ib.Close)
		res, err := sys.call(c.ctx(), c.members[0], &watchLogReq{From: 1, Window: 4, Notify: ib.Ref()})
		require.NoError(t, err)
		require.NoError(t, res.(*watchLogResult).Err.err(c.members[0]))
		return ib
	}
	ib, other := watch(s), watch(c.systems[1])
	// receive takes n entries, then requires that no more come for a while.
	receive := func(ib *actor.Inbox, n int) {
		t.Helper()
		got := 0
		for got < n {
			m, err := ib.ReceiveTimeout(waitFor)
			require.NoError(t, err, "%d of %d entries", got, n)
			got += len(m.(*logBatch).Entries)
		}
		require.Equal(t, n, got)
		_, err := ib.ReceiveTimeout(300 * time.Millisecond)
		require.Error(t, err, "no more than %d entries", n)
	}
	receive(ib, 4) // the window
	receive(other, 4)
	require.NoError(t, s.Node().Send(Ref(c.members[0]), &logAck{Watcher: ib.Ref(), N: 3}))
	receive(ib, 3) // as much as acknowledged
	receive(other, 0)
	require.NoError(t, s.Node().Send(Ref(c.members[0]), &unwatchLog{Watcher: ib.Ref()}))
	require.NoError(t, s.Node().Send(Ref(c.members[0]), &logAck{Watcher: ib.Ref(), N: 3}))
	receive(ib, 0) // nothing after unwatch
	require.NoError(t, s.Node().Send(Ref(c.members[0]), &logAck{Watcher: other.Ref(), N: 2}))
	receive(other, 2)

	// A server takes a bounded number of watchers.
	ask := func() error {
		ib, err := s.Node().NewInbox()
		require.NoError(t, err)
		t.Cleanup(ib.Close)
		res, err := s.call(c.ctx(), c.members[0], &watchLogReq{From: 1 << 40, Window: 1, Notify: ib.Ref()})
		require.NoError(t, err)
		return res.(*watchLogResult).Err.err(c.members[0])
	}
	for range maxLogWatchers - 1 { // other is one
		require.NoError(t, ask())
	}
	err := ask()
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "log watchers")

	_, err = s.WatchLog(c.ctx(), c.members[0], 0, 4)
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = s.WatchLog(c.ctx(), ServerID{Name: "nobody", Node: s.Name()}, 1, 4)
	require.ErrorIs(t, err, ErrNoSuchServer)
}

// Entries a snapshot replaced are refused with a CompactedError, at the
// start or when a slow reader falls behind; a stopping server ends the
// watch.
func TestWatchLogCompactedAndStopped(t *testing.T) {
	c := startSnapCluster(t, 3)
	s := c.systems[0]
	w, err := s.WatchLog(c.ctx(), c.members[0], 1, 4)
	require.NoError(t, err)
	for i := range 400 {
		_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte(fmt.Sprintf("set k%d v", i)))
		require.NoError(t, err)
	}
	c.waitStatus(0, "a snapshot", func(st *ServerStatus) bool { return st.SnapshotIndex > 0 && st.FirstIndex > 1 })
	// The watcher read nothing: it is behind the snapshot now.
	for range w.C {
	}
	var ce *CompactedError
	require.ErrorAs(t, w.Err(), &ce)
	require.ErrorIs(t, w.Err(), ErrCompacted)
	require.Equal(t, uint64(5), ce.From, "it had the window")
	require.Greater(t, ce.First, uint64(1))

	_, err = s.WatchLog(c.ctx(), c.members[1], 1, 4)
	require.ErrorAs(t, err, &ce)
	require.Equal(t, c.members[1], ce.Server)
	// A reader starts again from the first index held (a snapshot being
	// written may move it on meanwhile).
	from := ce.First
	for {
		w, err = s.WatchLog(c.ctx(), c.members[1], from, 16)
		if !errors.As(err, &ce) {
			break
		}
		require.Greater(t, ce.First, from)
		from = ce.First
	}
	require.NoError(t, err)
	e := <-w.C
	require.Equal(t, from, e.Index)

	// Its server stops: the watch ends.
	require.NoError(t, s.StopServer(c.ctx(), c.members[1]))
	for range w.C {
	}
	require.Error(t, w.Err())
	require.ErrorIs(t, w.Err(), ErrShuttingDown)
}
