package wal

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

func TestWrittenOncePerBatchPerWriter(t *testing.T) {
	h := openHarness(t, testConfig(walfs.NewMem()))
	a, b := h.writer("a"), h.writer("b")
	require.NoError(t, a.Write(ent(1, 1, "a1"), ent(2, 1, "a2")))
	require.NoError(t, b.Write(ent(1, 1, "b1")))
	require.NoError(t, a.Write(ent(3, 2, "a3")))
	require.Empty(t, h.notes, "nothing is acknowledged before the batch is synced")
	h.flush()
	require.Equal(t, []any{Written{UID: "a", Term: 2, From: 1, To: 3}}, h.take("a"))
	require.Equal(t, []any{Written{UID: "b", Term: 1, From: 1, To: 1}}, h.take("b"))
	n, bytes := a.InFlight()
	require.Zero(t, n)
	require.Zero(t, bytes)
	e, p := a.Mem().View().Get(3)
	require.Equal(t, Present, p)
	require.Equal(t, "a3", string(e.Payload))
}

func TestOverwriteInBatchAndAcrossBatches(t *testing.T) {
	h := openHarness(t, testConfig(walfs.NewMem()))
	a := h.writer("a")
	require.NoError(t, a.Write(ent(1, 1, "x"), ent(2, 1, "x"), ent(3, 1, "x")))
	h.flush()
	h.take("a")
	// A follower truncating a conflicting suffix: 2.. replaced, then more.
	require.NoError(t, a.Write(ent(2, 2, "y")))
	require.NoError(t, a.Write(ent(3, 2, "y"), ent(4, 2, "y")))
	h.flush()
	require.Equal(t, []any{Written{UID: "a", Term: 2, From: 2, To: 4}}, h.take("a"))
	// Overwrite below everything written in this batch.
	require.NoError(t, a.Write(ent(5, 2, "z")))
	require.NoError(t, a.Write(ent(1, 3, "w")))
	h.flush()
	require.Equal(t, []any{Written{UID: "a", Term: 3, From: 1, To: 1}}, h.take("a"))
	v := a.Mem().View()
	last, term, _ := v.Last()
	require.Equal(t, uint64(1), last)
	require.Equal(t, uint64(3), term)
	for i := uint64(2); i <= 5; i++ {
		_, p := v.Get(i)
		require.Equal(t, Absent, p, "index %d", i)
	}
}

func TestGapIsRejectedOnceUntilResend(t *testing.T) {
	h := openHarness(t, testConfig(walfs.NewMem()))
	a := h.writer("a")
	require.NoError(t, a.Write(ent(1, 1, "x")))
	require.NoError(t, a.Write(ent(3, 1, "x")))
	require.NoError(t, a.Write(ent(4, 1, "x")))
	require.Equal(t, []any{OutOfSequence{UID: "a", Expected: 2, Got: 3}}, h.take("a"))
	require.NoError(t, a.Write(ent(2, 1, "x"), ent(3, 1, "x")))
	h.flush()
	require.Equal(t, []any{Written{UID: "a", Term: 1, From: 1, To: 3}}, h.take("a"))
	n, _ := a.InFlight()
	require.Zero(t, n, "dropped writes release their in-flight budget")
}

func TestResetWriteSkipsGapCheck(t *testing.T) {
	h := openHarness(t, testConfig(walfs.NewMem()))
	a := h.writer("a")
	require.NoError(t, a.Write(ent(1, 1, "x"), ent(2, 1, "x")))
	require.NoError(t, a.WriteReset(ent(50, 4, "snap+1")))
	h.flush()
	require.Equal(t, []any{Written{UID: "a", Term: 4, From: 1, To: 50}}, h.take("a"))
	first, reset, _ := a.Mem().View().First()
	require.True(t, reset)
	require.Equal(t, uint64(50), first)
}

func TestBackpressureBoundsInFlight(t *testing.T) {
	cfg := testConfig(walfs.NewMem())
	cfg.MaxInFlightEntries = 3
	h := openHarness(t, cfg)
	a := h.writer("a")
	require.NoError(t, a.Write(ent(1, 1, "x"), ent(2, 1, "x")))
	require.NoError(t, a.Write(ent(3, 1, "x")))
	require.ErrorIs(t, a.Write(ent(4, 1, "x")), ErrBackpressure)
	h.flush()
	require.NoError(t, a.Write(ent(4, 1, "x")))
	// A writer with nothing in flight is admitted even above the bound.
	h.flush()
	big := []Entry{ent(5, 1, ""), ent(6, 1, ""), ent(7, 1, ""), ent(8, 1, "")}
	require.NoError(t, a.Write(big...))
}

func TestInvalidWrites(t *testing.T) {
	h := openHarness(t, testConfig(walfs.NewMem()))
	a := h.writer("a")
	require.ErrorIs(t, a.Write(), ErrInvalid)
	require.ErrorIs(t, a.Write(ent(0, 1, "")), ErrInvalid)
	require.ErrorIs(t, a.Write(ent(1, 1, ""), ent(3, 1, "")), ErrInvalid)
	_, err := h.o.newWriter("bad/uid", nil, nil)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestRolloverAndRecovery(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	payload := string(make([]byte, 500))
	for i := uint64(1); i <= 40; i++ {
		for _, uid := range []string{"a", "b"} {
			require.NoError(t, h.writer(uid).Write(ent(i, 1, payload)))
		}
		h.flush()
	}
	require.NotEmpty(t, h.closed, "40 KB through 4 KB files must roll over")
	for _, cf := range h.closed {
		require.Len(t, cf.Tables, 2)
	}
	// Closed tables stay readable until released.
	e, p := h.writer("a").Mem().View().Get(1)
	require.Equal(t, Present, p)
	require.Equal(t, uint64(1), e.Index)
	h.close()

	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	for _, uid := range []string{"a", "b"} {
		v := h2.o.tables.Get(uid).View()
		first, _, _ := v.First()
		last, _, _ := v.Last()
		require.Equal(t, uint64(1), first)
		require.Equal(t, uint64(40), last)
	}
	// Recovered writers keep their sequence: a gap is still detected.
	require.NoError(t, h2.writer("a").Write(ent(42, 1, "x")))
	require.Equal(t, []any{OutOfSequence{UID: "a", Expected: 41, Got: 42}}, h2.take("a"))
	// Files released by the segment writer are gone after restart.
	h2.releaseClosed()
	require.NoError(t, h2.writer("a").Write(ent(41, 1, "x")))
	h2.flush()
	h2.close()
	h3 := openHarness(t, testConfig(h2.fs.(*walfs.Mem).Crash(nil)))
	v := h3.o.tables.Get("a").View()
	first, _, _ := v.First()
	require.Equal(t, uint64(41), first)
	require.Nil(t, h3.o.tables.Get("b"))
}

// TestTinyEntriesRollSooner checks that rollover counts what entries cost
// in their mem tables: a file of tiny entries closes long before its bytes
// reach MaxFileBytes, so that MaxFileBytes bounds mem-table memory.
func TestTinyEntriesRollSooner(t *testing.T) {
	h := openHarness(t, testConfig(walfs.NewMem()))
	a := h.writer("a")
	for i := uint64(1); i <= 200; i++ {
		require.NoError(t, a.Write(ent(i, 1, "tiny")))
		h.flush()
	}
	require.NotEmpty(t, h.closed)
	for _, cf := range h.closed {
		var entries, bytes int
		for _, t := range cf.Tables {
			entries += t.Entries.Len()
			bytes += int(t.Entries.Bytes())
		}
		cost := entries*memEntryCost + bytes
		require.LessOrEqual(t, cost, int(h.cfg.MaxFileBytes), "file %d: %d entries of %d bytes", cf.Seq, entries, bytes)
		require.Greater(t, cost+2*memEntryCost, int(h.cfg.MaxFileBytes)/2, "file %d rolled far too early", cf.Seq)
	}
}

// TestKeptPayloadsRollSooner checks that rollover also counts what a kept
// payload (Entry.Shared) may cost beyond its bytes, so that MaxFileBytes
// still bounds mem-table memory: such files close with fewer entries than
// files of the same entries copied.
func TestKeptPayloadsRollSooner(t *testing.T) {
	perFile := func(shared bool) int {
		h := openHarness(t, testConfig(walfs.NewMem()))
		defer h.close()
		a := h.writer("a")
		for i := uint64(1); i <= 200; i++ {
			require.NoError(t, a.Write(Entry{Index: i, Term: 1, Payload: make([]byte, 2*sharedMinBytes), Shared: shared}))
			h.flush()
		}
		require.Greater(t, len(h.closed), 1)
		cf := h.closed[0]
		var entries, bytes int
		for _, t := range cf.Tables {
			entries += t.Entries.Len()
			bytes += int(t.Entries.Bytes())
		}
		cost := entries*memEntryCost + bytes
		if shared {
			cost += entries * int(keptCost(2*sharedMinBytes))
		}
		require.LessOrEqual(t, cost, int(h.cfg.MaxFileBytes), "shared %v: %d entries of %d bytes", shared, entries, bytes)
		return entries
	}
	copied, kept := perFile(false), perFile(true)
	require.Less(t, kept, copied)
}

func TestTornTailIsCut(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	require.NoError(t, h.writer("a").Write(ent(1, 1, "one")))
	h.flush()
	// A second batch of which only a part reached the disk.
	name := "/wal/" + fileName(1)
	data, err := fs.ReadFile(name)
	require.NoError(t, err)
	goodLen := len(data)
	torn := encodeTestBatch(2, []record{{uid: "a", index: 2, term: 1, payload: []byte("two")}})
	appendRaw(t, fs, name, torn[:len(torn)-3])

	h2 := openHarness(t, testConfig(fs))
	last, _, _ := h2.o.tables.Get("a").View().Last()
	require.Equal(t, uint64(1), last)
	data, err = fs.ReadFile(name)
	require.NoError(t, err)
	require.Len(t, data, goodLen, "the torn batch is cut off durably")
	// The next start sees a clean file.
	h2.close()
	openHarness(t, testConfig(fs))
}

func TestCorruptionBeforeTailStopsStartup(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	for i := uint64(1); i <= 3; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, "payload")))
		h.flush()
	}
	h.close()
	name := "/wal/" + fileName(1)
	data, err := fs.ReadFile(name)
	require.NoError(t, err)
	data[fileHeaderLen+batchHeaderLen+recordHeaderLen+2] ^= 0x10 // inside batch 1's record
	rewrite(t, fs, name, data)
	_, err = tryOpenHarness(t, testConfig(fs))
	require.ErrorIs(t, err, ErrCorrupt)
	var ce *CorruptionError
	require.True(t, errors.As(err, &ce))
	require.Equal(t, name, ce.File)
	require.Equal(t, int64(fileHeaderLen), ce.Offset)
}

func TestDiskFullFailsWritersWithoutAck(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	require.NoError(t, h.writer("a").Write(ent(1, 1, "ok")))
	h.flush()
	h.take("a")
	fs.SetCapacity(100)
	require.NoError(t, h.writer("a").Write(ent(2, 1, string(make([]byte, 200)))))
	require.NoError(t, h.writer("b").Write(ent(1, 1, "x")))
	h.flush()
	for _, uid := range []string{"a", "b"} {
		notes := h.take(uid)
		require.Len(t, notes, 1)
		wf, ok := notes[0].(WriteFailed)
		require.True(t, ok, "%s got %#v", uid, notes[0])
		require.ErrorIs(t, wf.Err, ErrFailed)
		require.ErrorIs(t, wf.Err, syscall.ENOSPC)
	}
	// Fail-stop: later writes are refused too, and nothing became visible.
	require.NoError(t, h.writer("a").Write(ent(3, 1, "x")))
	notes := h.take("a")
	require.Len(t, notes, 1)
	require.IsType(t, WriteFailed{}, notes[0])
	last, _, _ := h.writer("a").Mem().View().Last()
	require.Equal(t, uint64(1), last)
	// After a restart the partial batch is a torn tail and is cut.
	fs.SetCapacity(0)
	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	last, _, _ = h2.o.tables.Get("a").View().Last()
	require.Equal(t, uint64(1), last)
}

func TestSyncErrorFailsBatch(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	fs.SetFault(func(op walfs.Op, name string) error {
		if op == walfs.OpSync {
			return syscall.EIO
		}
		return nil
	})
	require.NoError(t, h.writer("a").Write(ent(1, 1, "x")))
	h.flush()
	notes := h.take("a")
	require.Len(t, notes, 1)
	require.ErrorIs(t, notes[0].(WriteFailed).Err, syscall.EIO)
}

func appendRaw(t *testing.T, fs *walfs.Mem, name string, p []byte) {
	t.Helper()
	data, err := fs.ReadFile(name)
	require.NoError(t, err)
	rewrite(t, fs, name, append(data, p...))
}

// rewrite replaces a file's content and syncs it (test set-up only).
func rewrite(t *testing.T, fs *walfs.Mem, name string, data []byte) {
	t.Helper()
	f, err := fs.Create(name)
	require.NoError(t, err)
	_, err = f.Write(data)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	require.NoError(t, fs.SyncDir("/wal"))
}

func TestFileNames(t *testing.T) {
	for _, seq := range []uint64{1, 42, 1<<64 - 1} {
		got, ok := parseFileName(fileName(seq))
		require.True(t, ok)
		require.Equal(t, seq, got)
	}
	for _, bad := range []string{"x.wal", "0000.wal", fmt.Sprintf("%020d.tmp", 1), fmt.Sprintf("%020d.wal", 0)} {
		_, ok := parseFileName(bad)
		require.False(t, ok, bad)
	}
}

func TestRolloverWaitsForSegmentWriter(t *testing.T) {
	cfg := testConfig(walfs.NewMem())
	cfg.MaxClosedFiles = 2
	h := openHarness(t, cfg)
	big := string(make([]byte, 3000)) // one entry per 4 KiB file
	for i := uint64(1); i <= 3; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, big)))
		h.flush()
	}
	require.Len(t, h.closed, 2)
	// The fourth batch needs a new file while two closed files wait.
	require.NoError(t, h.writer("a").Write(ent(4, 1, big)))
	h.flush()
	require.Empty(t, h.take("a")[3:], "nothing acknowledged while rollover waits")
	require.True(t, h.o.core.hasPending())
	names, err := h.fs.List("/wal")
	require.NoError(t, err)
	var files []string
	for _, name := range names {
		if _, ok := parseFileName(name); ok {
			files = append(files, name)
		} else {
			require.Equal(t, spareName, name, "nothing else in the directory")
		}
	}
	require.Len(t, files, 3, "the directory is bounded")
	// The segment writer catches up: the batch goes out.
	h.releaseClosed()
	h.flush()
	notes := h.take("a")
	require.Equal(t, Written{UID: "a", Term: 1, From: 4, To: 4}, notes[len(notes)-1])
}

// TestWriteListsAreReusedEmpty checks that a completed batch's write lists
// are kept for the next batches cleared: reused, and holding no payload
// alive.
func TestWriteListsAreReusedEmpty(t *testing.T) {
	h := openHarness(t, testConfig(walfs.NewMem()))
	a, b := h.writer("a"), h.writer("b")
	require.NoError(t, a.Write(ent(1, 1, "a1"), ent(2, 1, "a2")))
	require.NoError(t, b.Write(ent(1, 1, "b1")))
	h.flush()
	c := h.o.core
	require.Len(t, c.spareWrites, 2)
	var lists [][]memWrite
	for _, ws := range c.spareWrites {
		require.Empty(t, ws)
		for _, w := range ws[:cap(ws)] {
			require.Nil(t, w.Payload, "a kept list must not hold a payload")
		}
		lists = append(lists, ws[:1])
	}

	require.NoError(t, a.Write(ent(3, 1, "a3")))
	p := c.pending[0].progress[0]
	require.Same(t, &lists[1][0], &p.writes[0], "the next batch reuses a kept list")
	h.flush()
	e, _ := a.Mem().View().Get(3)
	require.Equal(t, "a3", string(e.Payload))
	e, _ = a.Mem().View().Get(2)
	require.Equal(t, "a2", string(e.Payload), "reusing a list changes no published entry")
}
