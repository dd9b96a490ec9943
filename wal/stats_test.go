package wal

import (
	"syscall"
	"testing"
	"time"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

func TestStatsCountBatchesWritesAndSyncs(t *testing.T) {
	h := openHarness(t, testConfig(walfs.NewMem()))
	defer h.close()
	const batches = 7
	for i := uint64(1); i <= batches; i++ {
		require.NoError(t, h.writer("a").Write(ent(2*i-1, 1, "x"), ent(2*i, 1, "y")))
		h.flush()
	}
	s := h.o.core.stats.load()
	require.Equal(t, int64(batches), s.Batches)
	require.Equal(t, int64(2*batches), s.Entries)
	require.Equal(t, uint64(batches), s.Write.Count, "one write per batch")
	require.Equal(t, uint64(batches), s.Sync.Count, "one sync per batch")
	require.Zero(t, s.WriteFailures)
	require.Zero(t, s.SyncFailures)
}

func TestStatsWithoutSyncHaveNoSyncs(t *testing.T) {
	cfg := testConfig(walfs.NewMem())
	cfg.Sync = SyncNoneUnsafeForTests
	h := openHarness(t, cfg)
	defer h.close()
	require.NoError(t, h.writer("a").Write(ent(1, 1, "x")))
	h.flush()
	s := h.o.core.stats.load()
	require.Equal(t, uint64(1), s.Write.Count)
	require.Zero(t, s.Sync.Count)
}

func TestStatsCountFailures(t *testing.T) {
	for _, tc := range []struct {
		op                  walfs.Op
		writeFail, syncFail int64
		writes, syncs       uint64
	}{
		{op: walfs.OpWrite, writeFail: 1, writes: 1},
		{op: walfs.OpCreate, writeFail: 1},
		{op: walfs.OpSync, syncFail: 1, writes: 1, syncs: 1},
		{op: walfs.OpSyncDir, syncFail: 1, writes: 1, syncs: 1},
	} {
		t.Run(tc.op.String(), func(t *testing.T) {
			fs := walfs.NewMem()
			h := openHarness(t, testConfig(fs))
			fs.SetFault(func(op walfs.Op, name string) error {
				if op == tc.op {
					return syscall.EIO
				}
				return nil
			})
			require.NoError(t, h.writer("a").Write(ent(1, 1, "x")))
			h.flush()
			s := h.o.core.stats.load()
			require.Zero(t, s.Batches)
			require.Equal(t, tc.writeFail, s.WriteFailures)
			require.Equal(t, tc.syncFail, s.SyncFailures)
			require.Equal(t, tc.writes, s.Write.Count)
			require.Equal(t, tc.syncs, s.Sync.Count)
		})
	}
}

// TestWALStatsFromAnyGoroutine reads the counters of a running WAL while
// it writes (the race detector checks the reads).
func TestWALStatsFromAnyGoroutine(t *testing.T) {
	n := startNode(t)
	segs, server := inbox(t, n), inbox(t, n)
	w, err := Start(n, testConfig(walfs.NewMem()), StartOptions{SegmentWriter: segs.Ref()})
	require.NoError(t, err)
	defer w.Stop(10 * time.Second)
	wr, err := w.Register("srv", server.Ref())
	require.NoError(t, err)
	const writes = 5
	var acked uint64
	for i := uint64(1); i <= writes; i++ {
		require.NoError(t, wr.Write(Entry{Index: i, Term: 1, Payload: []byte("p")}))
		_ = w.Stats()
		acked = receiveWritten(t, server, acked)
	}
	s := w.Stats()
	require.Equal(t, int64(writes), s.Batches, "one write in flight at a time makes one batch each")
	require.Equal(t, uint64(writes), s.Sync.Count)
	require.Equal(t, uint64(writes), s.Write.Count)
}
