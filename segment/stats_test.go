package segment

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/wal"
	"github.com/stretchr/testify/require"
)

func payloadBytes(es []wal.Entry) int64 {
	var n int64
	for _, e := range es {
		n += int64(len(e.Payload))
	}
	return n
}

func TestStatsCountFlushes(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	a, b := entries(1, 1, 10), entries(1, 1, 3)
	flush(t, s, 1, table("a", false, a), table("b", false, b))
	st := s.Stats()
	require.Equal(t, int64(1), st.Flushes)
	require.Equal(t, int64(13), st.Entries)
	require.Equal(t, payloadBytes(a)+payloadBytes(b), st.Bytes)
	require.Equal(t, uint64(1), st.Flush.Count)

	// Entries of a deleted UID, and entries at or below the floor, are
	// discarded and not counted.
	require.NoError(t, s.DeleteUID("b"))
	require.NoError(t, s.Truncate("a", 12))
	more := entries(11, 2, 4) // 11 and 12 are at or below the floor
	flush(t, s, 2, table("a", false, more), table("b", false, entries(4, 1, 2)))
	st = s.Stats()
	require.Equal(t, int64(2), st.Flushes)
	require.Equal(t, int64(13+2), st.Entries)
	require.Equal(t, payloadBytes(a)+payloadBytes(b)+payloadBytes(more[2:]), st.Bytes)
	require.Equal(t, uint64(2), st.Flush.Count)
	require.Zero(t, st.FlushFailures)

	// A failed flush counts as a failure, and the counters stay readable
	// after Close.
	require.NoError(t, s.Close())
	_, err := s.FlushFile(&wal.ClosedFile{Seq: 3, Tables: []wal.ClosedTable{table("a", false, entries(15, 2, 1))}})
	require.ErrorIs(t, err, ErrClosed)
	st = s.Stats()
	require.Equal(t, int64(1), st.FlushFailures)
	require.Equal(t, int64(2), st.Flushes)
	require.Equal(t, uint64(2), st.Flush.Count, "only successful flushes are timed")
}
