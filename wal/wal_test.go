package wal

import (
	"syscall"
	"testing"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

func startNode(t *testing.T) *actor.Node {
	t.Helper()
	n, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	return n
}

func inbox(t *testing.T, n *actor.Node) *actor.Inbox {
	t.Helper()
	ib, err := n.NewInbox()
	require.NoError(t, err)
	t.Cleanup(ib.Close)
	return ib
}

func receive(t *testing.T, ib *actor.Inbox) any {
	t.Helper()
	m, err := ib.ReceiveTimeout(10 * time.Second)
	require.NoError(t, err)
	return m
}

func TestWALProcessWritesAndRollsOver(t *testing.T) {
	n := startNode(t)
	segs, server := inbox(t, n), inbox(t, n)
	fs := walfs.NewMem()
	cfg := testConfig(fs)
	w, err := Start(n, cfg, StartOptions{SegmentWriter: segs.Ref()})
	require.NoError(t, err)
	wr, err := w.Register("srv1", server.Ref())
	require.NoError(t, err)

	payload := make([]byte, 1000)
	var acked uint64
	for i := uint64(1); i <= 20; i++ {
		// One write per batch, so the batches cross the 4 KiB file size.
		require.NoError(t, wr.Write(Entry{Index: i, Term: 1, Payload: payload}))
		acked = receiveWritten(t, server, acked)
	}
	require.Equal(t, uint64(20), acked)
	cf, ok := receive(t, segs).(*ClosedFile)
	require.True(t, ok)
	require.Equal(t, uint64(1), cf.Seq)
	require.Len(t, cf.Tables, 1)
	require.Equal(t, uint64(1), cf.Tables[0].First)
	last, _, ok := w.Last("srv1")
	require.True(t, ok)
	require.Equal(t, uint64(20), last)
	require.NoError(t, w.Stop(10*time.Second))
	require.ErrorIs(t, wr.Write(Entry{Index: 21, Term: 1}), ErrClosed)

	// A restart hands every file to the segment writer again.
	w2, err := Start(n, testConfig(fs.Crash(nil)), StartOptions{Name: "wal2", SegmentWriter: segs.Ref()})
	require.NoError(t, err)
	defer func() { require.NoError(t, w2.Stop(10*time.Second)) }()
	for {
		m := receive(t, segs)
		cf := m.(*ClosedFile)
		if cf.Seq == 1 {
			break
		}
	}
	last, _, _ = w2.Last("srv1")
	require.Equal(t, uint64(20), last)
}

// receiveWritten waits for the next notification, which must be a Written
// that continues from acked, and returns its To.
func receiveWritten(t *testing.T, ib *actor.Inbox, acked uint64) uint64 {
	t.Helper()
	m := receive(t, ib)
	wr, ok := m.(Written)
	require.True(t, ok, "got %#v", m)
	require.LessOrEqual(t, wr.From, acked+1)
	return wr.To
}

func TestWALProcessReportsDiskFull(t *testing.T) {
	n := startNode(t)
	segs, server := inbox(t, n), inbox(t, n)
	fs := walfs.NewMem()
	w, err := Start(n, testConfig(fs), StartOptions{SegmentWriter: segs.Ref()})
	require.NoError(t, err)
	defer w.Stop(10 * time.Second)
	wr, err := w.Register("srv", server.Ref())
	require.NoError(t, err)
	require.NoError(t, wr.Write(Entry{Index: 1, Term: 1, Payload: []byte("ok")}))
	require.Equal(t, Written{UID: "srv", Term: 1, From: 1, To: 1}, receive(t, server))

	fs.SetCapacity(64)
	require.NoError(t, wr.Write(Entry{Index: 2, Term: 1, Payload: make([]byte, 100)}))
	m := receive(t, server)
	wf, ok := m.(WriteFailed)
	require.True(t, ok, "got %#v", m)
	require.Equal(t, uint64(2), wf.From)
	require.ErrorIs(t, wf.Err, ErrFailed)
	require.ErrorIs(t, wf.Err, syscall.ENOSPC)
	require.ErrorIs(t, w.Err(), ErrFailed)
	require.ErrorIs(t, wr.Write(Entry{Index: 2, Term: 1}), ErrFailed, "a failed WAL refuses writes")
	last, _, _ := w.Last("srv")
	require.Equal(t, uint64(1), last, "nothing unacknowledged became visible")
}

func TestReRegisteredWriterContinuesLog(t *testing.T) {
	n := startNode(t)
	segs, server := inbox(t, n), inbox(t, n)
	w, err := Start(n, testConfig(walfs.NewMem()), StartOptions{SegmentWriter: segs.Ref()})
	require.NoError(t, err)
	defer w.Stop(10 * time.Second)
	old, err := w.Register("srv", server.Ref())
	require.NoError(t, err)
	require.NoError(t, old.Write(Entry{Index: 1, Term: 1}))
	fresh, err := w.Register("srv", server.Ref())
	require.NoError(t, err)
	require.NoError(t, fresh.Write(Entry{Index: 2, Term: 1}))
	var acked uint64
	for acked < 2 {
		acked = receiveWritten(t, server, acked)
	}
	for _, wr := range []*Writer{old, fresh} {
		n, b := wr.InFlight()
		require.Zero(t, n)
		require.Zero(t, b)
	}
}
