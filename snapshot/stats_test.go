package snapshot

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStatsCountWrites(t *testing.T) {
	ffs := newFaultFS()
	_, s, w, ib := startWriter(t, Options{FS: ffs, BlockBytes: 1000}, WriterOptions{})
	var bytes int64
	for i, uid := range []string{"a", "b", "c"} {
		require.NoError(t, w.Submit(Write{UID: uid, Index: 5, Term: 1, Data: &testSource{data: pattern(uint64(i), 5000)}, Notify: ib.Ref()}))
		bytes += recv[Written](t, ib).Size
	}
	st := s.Stats()
	require.Equal(t, int64(3), st.SnapshotsWritten)
	require.Equal(t, bytes, st.BytesWritten)
	require.Equal(t, uint64(3), st.Write.Count)
	require.Zero(t, st.WriteFailures)

	// A failing Source and a full disk are failures.
	require.NoError(t, w.Submit(Write{UID: "a", Index: 6, Term: 1, Data: &testSource{fail: errors.New("boom")}, Notify: ib.Ref()}))
	recv[WriteFailed](t, ib)
	ffs.set(func(f *faultFS) { f.writeBudget = 100 })
	require.NoError(t, w.Submit(Write{UID: "b", Index: 6, Term: 1, Data: &testSource{data: pattern(9, 5000)}, Notify: ib.Ref()}))
	recv[WriteFailed](t, ib)
	ffs.set(func(f *faultFS) { f.writeBudget = -1 })
	// So is a failed Commit, by a server writing directly.
	ffs.set(func(f *faultFS) { f.failSync = true })
	p, err := s.Begin("c", 6, 1, nil)
	require.NoError(t, err)
	_, err = p.Commit()
	require.ErrorIs(t, err, ErrIO)
	ffs.set(func(f *faultFS) { f.failSync = false })
	// A stale request is refused, not failed.
	_, err = s.Begin("c", 5, 1, nil)
	require.ErrorIs(t, err, ErrStale)

	st = s.Stats()
	require.Equal(t, int64(3), st.WriteFailures)
	require.Equal(t, int64(3), st.SnapshotsWritten)
	require.Equal(t, uint64(3), st.Write.Count, "only durable snapshots are timed")
}

func TestStatsCountTransfers(t *testing.T) {
	const size = 20_000
	p := newTransferPair(t, size)
	snd, rcv := p.sender(t, 1), p.receiver(t)
	n := newSimNet(t, 1, faults{})
	n.run(snd, rcv, 10_000)
	p.checkInstalled(t, n)

	chunk := int64(testSenderConfig.ChunkBytes)
	chunks := (p.info.Size + chunk - 1) / chunk
	src, dst := p.src.Stats(), p.dst.Stats()
	require.Equal(t, chunks, src.ChunksSent, "a clean transfer sends each chunk once")
	require.Equal(t, p.info.Size, src.ChunkBytesSent)
	require.Equal(t, int64(1), src.SnapshotsWritten)
	require.Zero(t, src.ChunksReceived)

	require.Equal(t, chunks, dst.ChunksReceived)
	require.Equal(t, p.info.Size, dst.ChunkBytesReceived)
	require.Zero(t, dst.SnapshotsWritten, "a received snapshot is not a written one")
	require.Zero(t, dst.ChunksSent)
}
