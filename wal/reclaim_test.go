package wal

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

// reclaim offers name to the harness's WAL as WAL.Reclaim does.
func (h *harness) reclaim(name string) (bool, error) {
	return reclaimFile(h.o.cfg, &h.o.fw.free, h.o.core.nextSeen.Load(), name)
}

// keepInStore plays the segment store that keeps closed files by hard
// link, on Mem, which has no links: it moves each closed file to a name
// of the store's (what is left once the writer removed the WAL's name)
// and returns those names.
func (h *harness) keepInStore(fs *walfs.Mem) []string {
	h.t.Helper()
	require.NoError(h.t, fs.MkdirAll("/store"))
	var kept []string
	h.release(func(cf *ClosedFile) error {
		name := fmt.Sprintf("/store/kept-%d", cf.Seq)
		kept = append(kept, name)
		return fs.Recycle(cf.Path, name)
	})
	return kept
}

// writeKeeping writes rounds from..to as writeRecycling does, but the
// store keeps every closed file and gives it back (Reclaim) a few rounds
// later, as a snapshot would kill it.
func writeKeeping(t *testing.T, h *harness, fs *walfs.Mem, from, to uint64, kept *[]string) {
	t.Helper()
	for i := from; i <= to; i++ {
		for _, uid := range []string{"a", "b"} {
			require.NoError(t, h.writer(uid).Write(ent(i, 1, payloadOf(uid, i))))
		}
		h.flush()
		*kept = append(*kept, h.keepInStore(fs)...)
		for len(*kept) > 2 {
			took, err := h.reclaim((*kept)[0])
			require.NoError(t, err)
			if !took {
				require.NoError(t, fs.Remove((*kept)[0]))
			}
			*kept = (*kept)[1:]
		}
		h.awaitSpare()
	}
}

// TestReclaimedFilesAreWrittenOver: files the store kept and gave up are
// written over like flushed files handed back, and crashes at random
// points with random unsynced bytes kept or lost bring back every entry
// acknowledged and not yet flushed, each its own.
func TestReclaimedFilesAreWrittenOver(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		fs := walfs.NewMem()
		cfg := testConfig(fs)
		cfg.RecycleFiles = 1 + rng.IntN(3)
		h := openHarness(t, cfg)
		n := 20 + uint64(rng.IntN(40))
		var kept []string
		writeKeeping(t, h, fs, 1, n, &kept)
		s := h.o.core.stats.load()
		// The first files start over zeros: the store holds two files
		// back, and a spare is prepared ahead.
		require.GreaterOrEqual(t, s.Recycled, s.Files-5, "seed %d: then every file starts over a reclaimed one", seed)
		crashInFlight(t, h, fs, n, seed, 12)
	}
}

// TestReclaimDeclines: the WAL takes only a file it cannot mistake, and
// leaves anything else where it was.
func TestReclaimDeclines(t *testing.T) {
	fs := walfs.NewMem()
	cfg := testConfig(fs)
	cfg.RecycleFiles = 1
	h := openHarness(t, cfg)
	var kept []string
	for i := uint64(1); len(kept) < 4; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, payloadOf("a", i))))
		h.flush()
		kept = append(kept, h.keepInStore(fs)...)
	}
	write := func(name string, data []byte) {
		f, err := fs.Create(name)
		require.NoError(t, err)
		_, err = f.Write(data)
		require.NoError(t, err)
		require.NoError(t, f.Datasync())
		require.NoError(t, f.Close())
	}
	next := h.o.core.nextSeen.Load()
	v1 := append([]byte(fileMagicV1), binary.LittleEndian.AppendUint64(nil, 1)...)
	write("/store/v1", append(v1, make([]byte, 100)...))
	write("/store/ahead", appendFileHeader(nil, next))
	write("/store/garbage", []byte("not a WAL file at all"))
	for _, name := range []string{"/store/v1", "/store/ahead", "/store/garbage", "/store/missing"} {
		took, err := h.reclaim(name)
		require.False(t, took, name)
		require.Error(t, err, name)
	}
	for _, name := range []string{"/store/v1", "/store/ahead", "/store/garbage"} {
		_, err := fs.ReadFile(name)
		require.NoError(t, err, "%s is left where it was", name)
	}
	took, err := h.reclaim(kept[0])
	require.NoError(t, err)
	require.True(t, took)
	took, err = h.reclaim(kept[1])
	require.NoError(t, err)
	require.False(t, took, "one file is kept already")
	_, err = fs.ReadFile(kept[1])
	require.NoError(t, err)
	h.close()
	took, err = h.reclaim(kept[2])
	require.NoError(t, err)
	require.False(t, took, "a stopped WAL keeps nothing")
}

// TestReclaimAfterNumberingRestarted: a WAL whose files were all flushed
// numbers its files from 1 again after a restart, so a file the store
// kept from before may carry a number the WAL is still to use; it is
// declined until the WAL's files are numbered past it, and then written
// over safely.
func TestReclaimAfterNumberingRestarted(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	var kept []string
	for i := uint64(1); len(kept) < 3; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, payloadOf("a", i))))
		h.flush()
		kept = append(kept, h.keepInStore(fs)...)
	}
	h.close()
	names, err := fs.List("/wal")
	require.NoError(t, err)
	for _, n := range names {
		require.NoError(t, fs.Remove(filepath.Join("/wal", n)), "as if the segment writer flushed them")
	}
	h2 := openHarness(t, testConfig(fs))
	require.Equal(t, uint64(1), h2.o.core.nextSeen.Load())
	old := kept[len(kept)-1] // the highest number
	took, err := h2.reclaim(old)
	require.Error(t, err)
	require.False(t, took)
	i := uint64(1)
	for ; h2.o.core.nextSeen.Load() <= 3; i++ {
		require.Less(t, i, uint64(200), "the WAL's files are numbered past the old file's")
		require.NoError(t, h2.writer("b").Write(ent(i, 1, payloadOf("b", i))))
		h2.flush()
		h2.releaseClosed()
	}
	took, err = h2.reclaim(old)
	require.NoError(t, err)
	require.True(t, took)
	for j := i; j < i+30; j++ {
		require.NoError(t, h2.writer("b").Write(ent(j, 1, payloadOf("b", j))))
		h2.flush()
		h2.releaseClosed()
		h2.awaitSpare()
	}
	require.Positive(t, h2.o.core.stats.load().Recycled)
	from, _, _ := h2.o.tables.Get("b").View().First()
	h3 := openHarness(t, testConfig(fs.Crash(nil)))
	requireEntries(t, h3.o, "b", from, i+29)
}

// TestReclaimOnTheOS: on the operating system's file system, a file the
// store keeps by hard link is taken once the WAL's own name is gone, and
// the next file starts over it.
func TestReclaimOnTheOS(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig(filepath.Join(dir, "wal"))
	cfg.MaxFileBytes = 4 << 10
	cfg.MaxClosedFiles = 1000
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "store"), 0o755))
	h := openHarness(t, cfg)
	i := uint64(1)
	for ; len(h.closed) == 0; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, payloadOf("a", i))))
		h.flush()
	}
	cf := h.closed[0]
	kept := filepath.Join(dir, "store", "kept")
	require.NoError(t, os.Link(cf.Path, kept))
	took, err := h.reclaim(kept)
	require.ErrorIs(t, err, walfs.ErrLinked)
	require.False(t, took, "the WAL's own name still links to it")
	h.releaseClosed()
	took, err = h.reclaim(kept)
	require.NoError(t, err)
	require.True(t, took)
	_, err = os.Stat(kept)
	require.ErrorIs(t, err, os.ErrNotExist)
	before := h.o.core.stats.load().Recycled
	h.awaitSpare()
	for start := h.o.core.stats.load().Files; h.o.core.stats.load().Files < start+3; i++ {
		require.NoError(t, h.writer("a").Write(ent(i, 1, payloadOf("a", i))))
		h.flush()
		h.releaseClosed()
		h.awaitSpare()
	}
	require.Greater(t, h.o.core.stats.load().Recycled, before, "a file started over the reclaimed one")
	from, _, _ := h.o.tables.Get("a").View().First()
	h.close()
	h2 := openHarness(t, cfg)
	requireEntries(t, h2.o, "a", from, i-1)
}
