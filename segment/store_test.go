package segment

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/wal"
	"github.com/stretchr/testify/require"
)

func openMem(t *testing.T, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("/seg", Options{FS: fs})
	require.NoError(t, err)
	return s
}

func entries(first, term uint64, n int) []wal.Entry {
	es := make([]wal.Entry, n)
	for i := range es {
		idx := first + uint64(i)
		es[i] = wal.Entry{Index: idx, Term: term, Payload: []byte(fmt.Sprint(idx, "@", term))}
	}
	return es
}

func table(uid string, reset bool, es []wal.Entry) wal.ClosedTable {
	return wal.ClosedTable{UID: uid, First: es[0].Index, Reset: reset, Entries: wal.PackEntries(es...)}
}

func flush(t *testing.T, s *Store, seq uint64, tables ...wal.ClosedTable) {
	t.Helper()
	_, err := s.FlushFile(&wal.ClosedFile{Seq: seq, Path: fmt.Sprint("file", seq), Tables: tables})
	require.NoError(t, err)
}

// crashAndReopen closes s after taking the image a power cut would leave
// of fs (only what was synced), and opens a store on that image.
func crashAndReopen(t *testing.T, fs *vfs.MemFS, s *Store) *Store {
	t.Helper()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	require.NoError(t, s.Close())
	return openMem(t, crashed)
}

func requireBounds(t *testing.T, s *Store, uid string, first, last uint64) {
	t.Helper()
	f, l, ok, err := s.Bounds(uid)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, [2]uint64{first, last}, [2]uint64{f, l})
}

func TestFlushOverwriteResetTruncate(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	flush(t, s, 1, table("a", false, entries(1, 1, 10)), table("b", false, entries(1, 1, 3)))
	requireBounds(t, s, "a", 1, 10)
	requireBounds(t, s, "b", 1, 3)
	// Overwrite from 6: 7..10 of term 1 must disappear.
	flush(t, s, 2, table("a", false, entries(6, 2, 1)))
	requireBounds(t, s, "a", 1, 6)
	e, err := s.Entry("a", 6)
	require.NoError(t, err)
	require.Equal(t, uint64(2), e.Term)
	_, err = s.Entry("a", 7)
	require.ErrorIs(t, err, ErrNotFound)
	// A neighbour UID with a common prefix is untouched.
	requireBounds(t, s, "b", 1, 3)

	rng, err := s.Range("a", 2, 100, 0)
	require.NoError(t, err)
	require.Len(t, rng, 5)
	require.Equal(t, uint64(2), rng[0].Index)
	rng, err = s.Range("a", 1, 6, 6)
	require.NoError(t, err)
	require.Len(t, rng, 2, "maxBytes stops the range once reached")

	require.NoError(t, s.Truncate("a", 4))
	requireBounds(t, s, "a", 5, 6)
	// A replay of the old file does not bring truncated entries back.
	flush(t, s, 1, table("a", false, entries(1, 1, 10)))
	flush(t, s, 2, table("a", false, entries(6, 2, 1)))
	requireBounds(t, s, "a", 5, 6)

	flush(t, s, 3, table("b", true, entries(50, 3, 2)))
	requireBounds(t, s, "b", 50, 51)
}

func TestDeleteUIDLeavesTombstone(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	flush(t, s, 1, table("a", false, entries(1, 1, 3)), table("ab", false, entries(1, 1, 3)))
	require.NoError(t, s.DeleteUID("a"))
	_, _, ok, err := s.Bounds("a")
	require.NoError(t, err)
	require.False(t, ok)
	requireBounds(t, s, "ab", 1, 3)
	res, err := s.FlushFile(&wal.ClosedFile{Seq: 2, Tables: []wal.ClosedTable{table("a", false, entries(4, 1, 1))}})
	require.NoError(t, err)
	require.True(t, res[0].Skipped)
	_, _, ok, err = s.Bounds("a")
	require.NoError(t, err)
	require.False(t, ok)
}

// TestFlushIsDurableWithoutPebbleWAL crashes pebble's file system right
// after FlushFile returned and checks nothing flushed was lost, while a
// truncation that was never synced may be.
func TestFlushIsDurableWithoutPebbleWAL(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openMem(t, fs)
	flush(t, s, 1, table("a", false, entries(1, 1, 100)))
	s2 := crashAndReopen(t, fs, s)
	defer s2.Close()
	requireBounds(t, s2, "a", 1, 100)
	e, err := s2.Entry("a", 77)
	require.NoError(t, err)
	require.Equal(t, "77@1", string(e.Payload))
}

func TestResetMovesTheFloorBothWays(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	flush(t, s, 1, table("a", false, entries(1, 1, 30)))
	require.NoError(t, s.Truncate("a", 20))
	requireBounds(t, s, "a", 21, 30)

	// The snapshot at 20 was lost; the log restarts after an older one at
	// 10: entries 11..20 are written again and must stay.
	flush(t, s, 2, table("a", true, entries(11, 2, 15)))
	requireBounds(t, s, "a", 11, 25)
	floor, err := s.Floor("a")
	require.NoError(t, err)
	require.EqualValues(t, 10, floor)
	flush(t, s, 3, table("a", false, entries(26, 2, 5)))
	requireBounds(t, s, "a", 11, 30)

	// An install at 40: the log restarts at 41. Replaying the files still
	// on disk after a crash (in order) changes nothing.
	flush(t, s, 4, table("a", true, entries(41, 3, 2)))
	requireBounds(t, s, "a", 41, 42)
	flush(t, s, 3, table("a", false, entries(26, 2, 5)))
	flush(t, s, 4, table("a", true, entries(41, 3, 2)))
	requireBounds(t, s, "a", 41, 42)
	floor, err = s.Floor("a")
	require.NoError(t, err)
	require.EqualValues(t, 40, floor)
}
