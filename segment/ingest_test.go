package segment

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/wal"
	"github.com/stretchr/testify/require"
)

// bigEntries is n entries of size bytes each, their payloads telling
// index and term apart.
func bigEntries(first, term uint64, n, size int) []wal.Entry {
	es := make([]wal.Entry, n)
	for i := range es {
		idx := first + uint64(i)
		p := bytes.Repeat([]byte{byte(idx)}, size)
		copy(p, fmt.Sprint(idx, "@", term))
		es[i] = wal.Entry{Index: idx, Term: term, Payload: p}
	}
	return es
}

// TestGrowingLogsSkipCompaction checks the point of ingesting: a server
// whose log only grows gets its entries written to the bottom level and
// never rewritten by a compaction, also when small runs of other servers,
// before and after it in key order, share the flushes.
func TestGrowingLogsSkipCompaction(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	const perFile, size = 300, 4 << 10 // 1.2 MiB: over ownTableBytes
	for f := range 6 {
		first := uint64(f*perFile + 1)
		flush(t, s, uint64(f+1), table("hot", false, bigEntries(first, 1, perFile, size)))
	}
	// These closed files have no WAL file to link: the runs are copied.
	require.Zero(t, s.Stats().Linked)
	m := s.db.Metrics()
	require.Zero(t, m.Levels[0].TablesCount, "a growing log's sstables went to level 0")
	require.EqualValues(t, 6, m.Levels[len(m.Levels)-1].TablesCount)
	require.Zero(t, m.Compact.Count)

	// Small runs on both sides of "hot" in key order share sstables that
	// must not overlap "hot"'s within one ingest.
	for f := 6; f < 9; f++ {
		first := uint64(f*perFile + 1)
		flush(t, s, uint64(f+1),
			table("cold-a", false, entries(uint64(f*3+1), 1, 3)),
			table("hot", false, bigEntries(first, 1, perFile, size)),
			table("z-cold", false, entries(uint64(f*3+1), 1, 3)))
	}
	requireBounds(t, s, "hot", 1, 9*perFile)
	requireBounds(t, s, "cold-a", 19, 27)
	requireBounds(t, s, "z-cold", 19, 27)
	got, err := s.Range("hot", 1, 9*perFile, 0)
	require.NoError(t, err)
	require.Len(t, got, 9*perFile)
	for i, e := range got {
		require.Equal(t, bigEntries(uint64(i+1), 1, 1, size)[0], e)
	}

	// A follower's overwrite in the middle still drops the old suffix.
	flush(t, s, 10, table("hot", false, bigEntries(1000, 2, perFile, size)))
	requireBounds(t, s, "hot", 1, 1000+perFile-1)
	e, err := s.Entry("hot", 1000)
	require.NoError(t, err)
	require.EqualValues(t, 2, e.Term)
}

// TestTruncationDurableAfterNextFlush checks that a truncation, which
// lives in pebble's memtable, is made durable by the next flush even when
// that flush itself has no deletion to commit.
func TestTruncationDurableAfterNextFlush(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := openMem(t, fs)
	flush(t, s, 1, table("a", false, entries(1, 1, 100)))
	require.NoError(t, s.Truncate("a", 60))
	flush(t, s, 2, table("a", false, entries(101, 1, 10)))
	s2 := crashAndReopen(t, fs, s)
	defer s2.Close()
	requireBounds(t, s2, "a", 61, 110)
	floor, err := s2.Floor("a")
	require.NoError(t, err)
	require.EqualValues(t, 60, floor)
}

// TestOpenRemovesIngestLeftovers checks that an sstable a crash left
// between writing and ingesting does not stay on disk for ever.
func TestOpenRemovesIngestLeftovers(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	flush(t, s, 1, table("a", false, entries(1, 1, 10)))
	require.NoError(t, s.Close())
	f, err := fs.Create("/seg/"+ingestPrefix+"9.sst", "")
	require.NoError(t, err)
	require.NoError(t, f.Close())

	s2 := openMem(t, fs)
	defer s2.Close()
	names, err := fs.List("/seg")
	require.NoError(t, err)
	for _, n := range names {
		require.NotContains(t, n, ingestPrefix)
	}
	requireBounds(t, s2, "a", 1, 10)
}

// crashAtIngestCleanup takes a crash image of the file system at the
// moment a flush removes its ingested sstable's temporary name: the
// ingest is done, and whatever the flush made durable before it is in
// the image.
type crashAtIngestCleanup struct {
	*vfs.MemFS
	crashImage
}

func (fs *crashAtIngestCleanup) Remove(name string) error {
	if strings.Contains(name, ingestPrefix) {
		fs.take(fs.MemFS)
	}
	return fs.MemFS.Remove(name)
}

// crashImage holds the first crash image a test takes. pebble calls the
// file system from its own goroutines too, so taking and reading it lock.
type crashImage struct {
	mu  sync.Mutex
	img *vfs.MemFS
}

// take clones fs as a crash would leave it, unless an image was taken.
func (c *crashImage) take(fs *vfs.MemFS) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.img == nil {
		c.img = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	}
}

// image returns the image taken, or nil.
func (c *crashImage) image() *vfs.MemFS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.img
}

// TestOverwriteNeverLeavesTheOldSuffixBesideNewEntries crashes a
// follower's overwrite right after its entries were ingested: the
// deletion of the suffix they replace must already be durable, or the
// store would hold the new entries next to the old ones after them.
func TestOverwriteNeverLeavesTheOldSuffixBesideNewEntries(t *testing.T) {
	base := vfs.NewCrashableMem()
	s := openMem(t, base)
	flush(t, s, 1, table("a", false, entries(1, 1, 10)))
	require.NoError(t, s.Close())

	fs := &crashAtIngestCleanup{MemFS: base}
	s = openMem(t, fs)
	flush(t, s, 2, table("a", false, entries(6, 2, 2)))
	require.NotNil(t, fs.image())
	require.NoError(t, s.Close())

	s2 := openMem(t, fs.image())
	defer s2.Close()
	requireBounds(t, s2, "a", 1, 7)
	e, err := s2.Entry("a", 7)
	require.NoError(t, err)
	require.EqualValues(t, 2, e.Term)
	_, err = s2.Entry("a", 8)
	require.ErrorIs(t, err, ErrNotFound)
}
