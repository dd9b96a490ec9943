package wal

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

// recycleClosed plays the segment writer for flushed files whose entries
// it copied: it drops their tables and hands the files back to the WAL.
func (h *harness) recycleClosed() { h.release((*ClosedFile).Recycle) }

// payloadOf is what entry i of uid carries in these tests: recognisably
// its own, so that an old file's entry read back in its place shows.
func payloadOf(uid string, i uint64) string {
	return fmt.Sprintf("%s/%d/%s", uid, i, strings.Repeat("x", 300+int(i%7)*40))
}

// writeRecycling writes rounds from..to of one entry for each of "a" and
// "b", one batch per round, handing every closed file back as the
// segment writer would after copying it.
func writeRecycling(t *testing.T, h *harness, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		for _, uid := range []string{"a", "b"} {
			require.NoError(t, h.writer(uid).Write(ent(i, 1, payloadOf(uid, i))))
		}
		h.flush()
		h.recycleClosed()
		h.awaitSpare()
	}
}

// requireEntries checks that uid's recovered log is exactly from..to, each
// entry its own.
func requireEntries(t *testing.T, o *opened, uid string, from, to uint64) {
	t.Helper()
	v := o.tables.Get(uid).View()
	first, _, _ := v.First()
	last, _, _ := v.Last()
	require.Equal(t, []uint64{from, to}, []uint64{first, last}, uid)
	for i := from; i <= to; i++ {
		e, p := v.Get(i)
		require.Equal(t, Present, p, "%s %d", uid, i)
		require.Equal(t, payloadOf(uid, i), string(e.Payload), "%s %d", uid, i)
	}
}

// TestFlushedFilesAreWrittenOver: once files come back flushed, new files
// start over them instead of over zeros, at most RecycleFiles of them wait
// in the directory, and a restart recovers what the open file holds and
// nothing of what was written before in the same blocks.
func TestFlushedFilesAreWrittenOver(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	for i := uint64(1); i <= 60; i++ {
		writeRecycling(t, h, i, i)
		names, err := fs.List("/wal")
		require.NoError(t, err)
		free := 0
		for _, n := range names {
			if isFreeName(n) {
				free++
			}
		}
		require.LessOrEqual(t, free, h.cfg.RecycleFiles)
	}
	s := h.o.core.stats.load()
	require.GreaterOrEqual(t, s.Files, int64(10))
	require.GreaterOrEqual(t, s.Recycled, s.Files-3, "after the first files, every file starts over a flushed one")
	require.Equal(t, s.Files-1, s.Preallocated+s.Recycled)

	// The process dies with the current file still holding an old file's
	// bytes after its batches.
	first := h.o.tables.Get("a").View()
	from, _, _ := first.First()
	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	requireEntries(t, h2.o, "a", from, 60)
	requireEntries(t, h2.o, "b", from, 60)
	names, err := h2.fs.List("/wal")
	require.NoError(t, err)
	for _, n := range names {
		require.False(t, isFreeName(n), "recovery removes the free files: %v", names)
	}
	// And the WAL goes on over the recovered file.
	writeRecycling(t, h2, 61, 80)
	h2.close()
	h3 := openHarness(t, testConfig(h2.fs.(*walfs.Mem).Crash(nil)))
	last, _, _ := h3.o.tables.Get("a").View().Last()
	require.Equal(t, uint64(80), last)
}

// TestRecyclingSurvivesCrashes crashes at random points of a WAL that
// writes over its flushed files, with random parts of the unsynced bytes
// kept or lost: every entry acknowledged and not yet flushed comes back,
// each its own, and nothing an older file held in the same blocks does.
func TestRecyclingSurvivesCrashes(t *testing.T) {
	for seed := uint64(1); seed <= 60; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		fs := walfs.NewMem()
		cfg := testConfig(fs)
		cfg.RecycleFiles = 1 + rng.IntN(3)
		h := openHarness(t, cfg)
		n := 10 + uint64(rng.IntN(50))
		writeRecycling(t, h, 1, n)
		crashInFlight(t, h, fs, n, seed, 8)
	}
}

// crashInFlight crashes fs with entry n+1 of "a" written but not synced,
// rounds 1..n acknowledged, and checks that a restart recovers every
// entry the segment writer still needs (it is behind by a random number
// of files) and n+1 or not, each entry its own.
// The crash keeps or loses unsynced bytes by a generator of seed and
// stream.
func crashInFlight(t *testing.T, h *harness, fs *walfs.Mem, n, seed, stream uint64) {
	t.Helper()
	from, _, _ := h.o.tables.Get("a").View().First()
	require.NoError(t, h.writer("a").Write(ent(n+1, 1, payloadOf("a", n+1))))
	if b := h.o.core.cut(); b != nil && !b.newFile {
		_, err := h.o.fw.f.Write(b.out)
		require.NoError(t, err)
	}
	h2, err := tryOpenHarness(t, testConfig(fs.Crash(rand.New(rand.NewPCG(seed, stream)))))
	require.NoError(t, err, "seed %d", seed)
	requireEntries(t, h2.o, "b", from, n)
	last, _, _ := h2.o.tables.Get("a").View().Last()
	require.Contains(t, []uint64{n, n + 1}, last, "seed %d", seed)
	requireEntries(t, h2.o, "a", from, last)
}

// TestLinkedFilesAreNotWrittenOver: a file that another name links to (as
// the segment store keeps a closed file by hard link) is removed, not
// kept to be written over, even if handed back with Recycle.
func TestLinkedFilesAreNotWrittenOver(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig(dir)
	cfg.MaxFileBytes = 4 << 10
	cfg.MaxClosedFiles = 1000
	h := openHarness(t, cfg)
	for i := uint64(1); i <= 12; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, payloadOf("a", i))))
		h.flush()
	}
	require.NotEmpty(t, h.closed)
	cf := h.closed[0]
	kept := dir + "/kept"
	require.NoError(t, osLink(cf.Path, kept))
	before := readOS(t, kept)
	for _, t2 := range cf.Tables {
		t2.Log.DropFile(cf.Seq)
	}
	require.NoError(t, cf.Recycle())
	require.Empty(t, h.o.fw.free.paths, "a linked file is not kept")
	for i := uint64(13); i <= 40; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, payloadOf("a", i))))
		h.flush()
		h.awaitSpare()
	}
	require.Equal(t, before, readOS(t, kept), "the linked file's bytes are untouched")
	h.close()
}

func osLink(from, to string) error { return os.Link(from, to) }

func readOS(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	return data
}

// TestFailedCutOfARecycledFileFailsTheWAL: a closed file that was written
// over a flushed one must lose the old bytes after its batches before the
// next file starts, or a restart would take them for damage. If the cut
// fails, the WAL fails instead of going on.
func TestFailedCutOfARecycledFileFailsTheWAL(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	next := uint64(1)
	for ; h.o.core.stats.load().Recycled == 0; next++ {
		require.Less(t, next, uint64(100), "no file started over a flushed one")
		writeRecycling(t, h, next, next)
	}
	fs.SetFault(failTruncates)
	var failed bool
	for i := next; i < next+100 && !failed; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, payloadOf("a", i))))
		h.flush()
		for _, n := range h.take("a") {
			_, failed = n.(WriteFailed)
		}
	}
	require.True(t, failed, "the batch that needed the cut failed")
	require.ErrorIs(t, h.o.core.failed, ErrFailed)
	require.ErrorContains(t, h.o.core.failed, "cut the old bytes")
}
