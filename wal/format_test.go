package wal

import (
	"encoding/binary"
	"testing"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

// writeV1File writes WAL file seq as version 1 of the format did, one
// batch per entry of uid, with batch sequence numbers from batchSeq on.
func writeV1File(t *testing.T, fs *walfs.Mem, seq, batchSeq uint64, uid string, from, to uint64) {
	t.Helper()
	data := append([]byte(fileMagicV1), binary.LittleEndian.AppendUint64(nil, seq)...)
	for i := from; i <= to; i++ {
		data = append(data, encodeTestBatchV1(batchSeq, []record{{uid: uid, index: i, term: 1, payload: []byte("v1")}})...)
		batchSeq++
	}
	rewrite(t, fs, "/wal/"+fileName(seq), data)
}

// TestVersion1FilesRecover: a WAL directory written before batches were
// bound to their files recovers, and the WAL goes on in the new version.
func TestVersion1FilesRecover(t *testing.T) {
	fs := walfs.NewMem()
	require.NoError(t, fs.MkdirAll("/wal"))
	writeV1File(t, fs, 1, 1, "a", 1, 3)
	writeV1File(t, fs, 2, 4, "a", 4, 5)
	h := openHarness(t, testConfig(fs))
	v := h.o.tables.Get("a").View()
	first, _, _ := v.First()
	last, _, _ := v.Last()
	require.Equal(t, []uint64{1, 5}, []uint64{first, last})
	e, p := v.Get(4)
	require.Equal(t, Present, p)
	require.Equal(t, "v1", string(e.Payload))

	require.NoError(t, h.writer("a").Write(ent(6, 1, "v2")))
	h.flush()
	h.close()
	data, err := fs.ReadFile("/wal/" + fileName(3))
	require.NoError(t, err)
	require.Equal(t, fileMagic, string(data[:8]), "new files are of the current version")

	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	last, _, _ = h2.o.tables.Get("a").View().Last()
	require.Equal(t, uint64(6), last)
}

// TestFileWrittenOverAnotherRecoversItsOwnBatches: a file written over an
// older one (recycled) holds that file's bytes after its own last batch.
// Recovery reads the file's own batches, cuts the rest as a torn tail, and
// takes none of the older file's entries, wherever its batches sit.
func TestFileWrittenOverAnotherRecoversItsOwnBatches(t *testing.T) {
	// Two files: 1 (entries 1-4 of "a", the older file) and 2.
	build := func() (*walfs.Mem, []byte, []byte) {
		fs := walfs.NewMem()
		cfg := testConfig(fs)
		cfg.PreallocateBytes = -1
		h := openHarness(t, cfg)
		for i := uint64(1); i <= 4; i++ {
			require.NoError(t, h.writer("a").Write(ent(i, 1, "old")))
			h.flush()
		}
		h.o.core.forceRoll = true
		require.NoError(t, h.writer("a").Write(ent(5, 2, "new")))
		h.flush()
		h.close()
		old, err := fs.ReadFile("/wal/" + fileName(1))
		require.NoError(t, err)
		cur, err := fs.ReadFile("/wal/" + fileName(2))
		require.NoError(t, err)
		require.Greater(t, len(old), len(cur))
		return fs, old, cur
	}
	for _, tc := range []struct {
		name string
		tail func(old, cur []byte) []byte
	}{
		// The older file's bytes from where the new one ends.
		{"unaligned", func(old, cur []byte) []byte { return old[len(cur):] }},
		// Whole batches of the older file right after the new one's.
		{"aligned", func(old, cur []byte) []byte { return old[fileHeaderLen:] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, old, cur := build()
			rewrite(t, fs, "/wal/"+fileName(2), append(append([]byte(nil), cur...), tc.tail(old, cur)...))
			require.NoError(t, fs.Remove("/wal/"+fileName(1))) // it was recycled
			h := openHarness(t, testConfig(fs))
			v := h.o.tables.Get("a").View()
			first, _, _ := v.First()
			last, _, _ := v.Last()
			require.Equal(t, []uint64{5, 5}, []uint64{first, last})
			data, err := fs.ReadFile("/wal/" + fileName(2))
			require.NoError(t, err)
			require.Equal(t, cur, data, "the older file's bytes are cut off")
		})
	}

	// The new file's first batch, and with it its header, never reached
	// the disk: the file still holds the older file entirely. It is
	// removed as a file torn while it was created.
	t.Run("header", func(t *testing.T) {
		fs, old, _ := build()
		rewrite(t, fs, "/wal/"+fileName(3), old)
		require.NoError(t, fs.Remove("/wal/"+fileName(1)))
		h := openHarness(t, testConfig(fs))
		v := h.o.tables.Get("a").View()
		first, _, _ := v.First()
		last, _, _ := v.Last()
		require.Equal(t, []uint64{5, 5}, []uint64{first, last})
		_, err := fs.ReadFile("/wal/" + fileName(3))
		require.Error(t, err, "the torn new file is removed")
	})
}

// TestUnknownVersionIsRefused: a file a newer release wrote stops
// start-up with a typed error, even as the last file, where damage could
// pass for a torn tail, and nothing is cut or removed.
func TestUnknownVersionIsRefused(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	require.NoError(t, h.writer("a").Write(ent(1, 1, "one")))
	h.flush()
	h.close()
	name := "/wal/" + fileName(1)
	data, err := fs.ReadFile(name)
	require.NoError(t, err)
	data[7] = fileMagic[7] + 1
	rewrite(t, fs, name, data)
	_, err = tryOpenHarness(t, testConfig(fs))
	require.ErrorIs(t, err, ErrUnknownVersion)
	require.ErrorIs(t, err, ErrCorrupt)
	after, err := fs.ReadFile(name)
	require.NoError(t, err)
	require.Equal(t, data, after)
}
