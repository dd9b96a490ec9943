package segment

import (
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal"
	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

// linkEnv is a WAL and a store sharing one crashable file system, with
// the test playing the segment writer.
type linkEnv struct {
	t     *testing.T
	fs    *vfs.MemFS
	node  *actor.Node
	w     *wal.WAL
	segs  *actor.Inbox
	acks  *actor.Inbox
	wr    map[string]*wal.Writer
	ticks uint64
}

func newLinkEnv(t *testing.T) *linkEnv {
	fs := vfs.NewCrashableMem()
	for _, dir := range []string{"/wal", "/seg"} {
		require.NoError(t, fs.MkdirAll(dir, 0o755))
	}
	d, err := fs.OpenDir("/")
	require.NoError(t, err)
	require.NoError(t, d.Sync())
	require.NoError(t, d.Close())
	node, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(node.Stop)
	e := &linkEnv{t: t, fs: fs, node: node, wr: map[string]*wal.Writer{}}
	e.segs, err = node.NewInbox()
	require.NoError(t, err)
	e.acks, err = node.NewInbox()
	require.NoError(t, err)
	cfg := wal.DefaultConfig("/wal")
	cfg.FS = walfs.FromVFS(fs)
	e.w, err = wal.Start(node, cfg, wal.StartOptions{Name: "link-wal", SegmentWriter: e.segs.Ref()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.w.Stop(10 * time.Second) })
	return e
}

func (e *linkEnv) open(fs vfs.FS) *Store {
	s, err := Open("/seg", Options{FS: fs, LinkMinBytes: 1 << 10})
	require.NoError(e.t, err)
	return s
}

func (e *linkEnv) write(uid string, es []wal.Entry) {
	if e.wr[uid] == nil {
		w, err := e.w.Register(uid, e.acks.Ref())
		require.NoError(e.t, err)
		e.wr[uid] = w
	}
	require.NoError(e.t, e.wr[uid].Write(es...))
	_, err := e.acks.ReceiveTimeout(10 * time.Second)
	require.NoError(e.t, err)
}

// closeFile rolls the WAL over and returns the file it closed. The file
// is handed over once a batch of the next is durable: a small write to
// another UID provides one.
func (e *linkEnv) closeFile() *wal.ClosedFile {
	require.NoError(e.t, e.w.Rollover())
	e.ticks++
	e.write("tick", entries(e.ticks, 1, 1))
	m, err := e.segs.ReceiveTimeout(10 * time.Second)
	require.NoError(e.t, err)
	return m.(*wal.ClosedFile)
}

func linkedNames(t *testing.T, fs vfs.FS) []string {
	names, err := fs.List("/seg")
	require.NoError(t, err)
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, linkPrefix) {
			out = append(out, n)
		}
	}
	return out
}

func requireEntries(t *testing.T, s *Store, uid string, want []wal.Entry) {
	t.Helper()
	got, err := s.Range(uid, want[0].Index, want[len(want)-1].Index, 0)
	require.NoError(t, err)
	require.Equal(t, want, got)
	for _, w := range want {
		e, err := s.Entry(uid, w.Index)
		require.NoError(t, err)
		require.Equal(t, w, e)
	}
}

// TestFlushLinksADominantRun checks that a run that is most of its WAL
// file is kept by linking the file, not copied, that its entries read back
// from the file after the WAL removed it and after a restart, and that a
// small run of the same file is still copied.
func TestFlushLinksADominantRun(t *testing.T) {
	e := newLinkEnv(t)
	s := e.open(e.fs)
	hot := bigEntries(1, 1, 40, 1<<10)
	e.write("hot", hot)
	e.write("cold", entries(1, 1, 2))
	cf := e.closeFile()
	results, err := s.FlushFile(cf)
	require.NoError(t, err)
	require.EqualValues(t, 1, s.Stats().Linked)
	linked := map[string]bool{}
	for _, r := range results {
		linked[r.Table.UID] = r.Linked
	}
	require.Equal(t, map[string]bool{"hot": true, "cold": false}, linked, "the result names the linked run, so that the file is not written over")
	require.Len(t, linkedNames(t, e.fs), 1)
	format, err := s.readUvarint(formatKey)
	require.NoError(t, err)
	require.Equal(t, formatLinked, format, "the store does not say it holds references")
	// The sstable holds references, not the 40 KiB of entries.
	m := s.db.Metrics()
	require.Less(t, m.DiskSpaceUsage(), uint64(16<<10), "the entries were copied")
	for _, tb := range cf.Tables {
		tb.Log.DropFile(cf.Seq)
	}
	require.NoError(t, cf.Remove())

	requireEntries(t, s, "hot", hot)
	requireEntries(t, s, "cold", entries(1, 1, 2))
	first, last, ok, err := s.Bounds("hot")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, [2]uint64{1, 40}, [2]uint64{first, last})

	require.NoError(t, s.Close())
	s = e.open(e.fs)
	defer s.Close()
	requireEntries(t, s, "hot", hot)
}

// TestLinkedFileCollectedWhenNothingRefersToIt checks that a linked file
// stays while any entry of its run does and goes once a truncation, a
// follower's overwrite or a deletion removed them all, and that a crash
// right after never brings back references to the removed file.
func TestLinkedFileCollectedWhenNothingRefersToIt(t *testing.T) {
	for _, how := range []string{"truncate", "overwrite", "delete"} {
		t.Run(how, func(t *testing.T) {
			e := newLinkEnv(t)
			s := e.open(e.fs)
			e.write("hot", bigEntries(1, 1, 20, 1<<10))
			_, err := s.FlushFile(e.closeFile())
			require.NoError(t, err)
			require.Len(t, linkedNames(t, e.fs), 1)

			switch how {
			case "truncate":
				require.NoError(t, s.Truncate("hot", 10))
				require.Len(t, linkedNames(t, e.fs), 1, "half the run is still referred to")
				require.NoError(t, s.Truncate("hot", 20))
			case "overwrite":
				e.write("hot", bigEntries(1, 2, 30, 1<<10))
				_, err := s.FlushFile(e.closeFile())
				require.NoError(t, err)
				require.EqualValues(t, 2, s.Stats().Linked)
			case "delete":
				require.NoError(t, s.DeleteUID("hot"))
			}
			require.EqualValues(t, 1, s.Stats().LinkedCollected)
			if how == "overwrite" {
				require.Len(t, linkedNames(t, e.fs), 1, "the new run's file stays")
			} else {
				require.Empty(t, linkedNames(t, e.fs))
			}

			s2 := crashAndReopenLinked(t, e, s)
			defer s2.Close()
			switch how {
			case "truncate":
				_, _, ok, err := s2.Bounds("hot")
				require.NoError(t, err)
				require.False(t, ok)
			case "overwrite":
				requireEntries(t, s2, "hot", bigEntries(1, 2, 30, 1<<10))
			}
		})
	}
}

// TestRunPartlyCoveredBySnapshotIsLinked: a server that snapshots often
// has the first part of each file's entries truncated before the file is
// flushed; the rest is still linked, not copied, since the server wrote
// the file, and the file goes once the next truncation covers the rest.
func TestRunPartlyCoveredBySnapshotIsLinked(t *testing.T) {
	e := newLinkEnv(t)
	s := e.open(e.fs)
	defer s.Close()
	hot := bigEntries(1, 1, 40, 1<<10)
	e.write("hot", hot)
	require.NoError(t, s.Truncate("hot", 25))
	_, err := s.FlushFile(e.closeFile())
	require.NoError(t, err)
	require.EqualValues(t, 1, s.Stats().Linked, "the 15 entries above the floor were copied")
	require.Less(t, s.db.Metrics().DiskSpaceUsage(), uint64(8<<10), "the entries were copied")
	requireEntries(t, s, "hot", hot[25:])
	first, _, ok, err := s.Bounds("hot")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(26), first)
	require.NoError(t, s.Truncate("hot", 40))
	require.EqualValues(t, 1, s.Stats().LinkedCollected)
	require.Empty(t, linkedNames(t, e.fs))
}

// TestCollectedLinkedFileIsOfferedBack: a collected linked file goes to
// the function SetReclaim set before it would be removed; a file taken is
// left alone, a file declined is removed, and when the offer is made the
// deletions that emptied the file are durable: a crash at that moment
// brings back no reference to it.
func TestCollectedLinkedFileIsOfferedBack(t *testing.T) {
	for _, take := range []bool{true, false} {
		e := newLinkEnv(t)
		s := e.open(e.fs)
		e.write("hot", bigEntries(1, 1, 20, 1<<10))
		_, err := s.FlushFile(e.closeFile())
		require.NoError(t, err)
		names := linkedNames(t, e.fs)
		require.Len(t, names, 1)
		var offered []string
		s.SetReclaim(func(path string) bool {
			offered = append(offered, path)
			crashed := e.open(e.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
			_, _, ok, err := crashed.Bounds("hot")
			require.NoError(t, err)
			require.False(t, ok, "the truncation is durable before the file is offered")
			require.NoError(t, crashed.Close())
			if take {
				require.NoError(t, e.fs.Rename(path, "/wal/taken"))
			}
			return take
		})
		require.NoError(t, s.Truncate("hot", 20))
		require.Equal(t, []string{"/seg/" + names[0]}, offered)
		require.Empty(t, linkedNames(t, e.fs))
		require.EqualValues(t, 1, s.Stats().LinkedCollected)
		_, err = e.fs.Stat("/wal/taken")
		if take {
			require.NoError(t, err, "a file taken is not removed")
			require.EqualValues(t, 1, s.Stats().LinkedReclaimed)
		} else {
			require.Error(t, err)
			require.EqualValues(t, 0, s.Stats().LinkedReclaimed)
		}
		s2 := crashAndReopenLinked(t, e, s)
		_, _, ok, err := s2.Bounds("hot")
		require.NoError(t, err)
		require.False(t, ok)
		require.NoError(t, s2.Close())
	}
}

func crashAndReopenLinked(t *testing.T, e *linkEnv, s *Store) *Store {
	t.Helper()
	crashed := e.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	require.NoError(t, s.Close())
	return e.open(crashed)
}

// damageLastPayload flips a byte in the last entry's payload of a file of
// 1 KiB entries and returns the file's size.
func damageLastPayload(t *testing.T, fs vfs.FS, path string) int64 {
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	require.NoError(t, err)
	st, err := f.Stat()
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{0xff}, st.Size()-100)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return st.Size()
}

// TestDamagedLinkedFileIsCorruption checks that a reference into a
// damaged file is reported, never returned as an entry.
func TestDamagedLinkedFileIsCorruption(t *testing.T) {
	e := newLinkEnv(t)
	s := e.open(e.fs)
	defer s.Close()
	e.write("hot", bigEntries(1, 1, 20, 1<<10))
	_, err := s.FlushFile(e.closeFile())
	require.NoError(t, err)
	names := linkedNames(t, e.fs)
	require.Len(t, names, 1)
	size := damageLastPayload(t, e.fs, "/seg/"+names[0])

	_, err = s.Entry("hot", 20)
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = s.Range("hot", 1, 20, 0)
	require.ErrorIs(t, err, ErrCorrupt)
	e1, err := s.Entry("hot", 1)
	require.NoError(t, err)
	require.Equal(t, bigEntries(1, 1, 1, 1<<10)[0], e1)

	// A damaged reference pointing past the file's end is refused before
	// anything is read or allocated for it. TotalAlloc counts the whole
	// process, the store's background work included (2.7 MB of it once,
	// on a loaded machine), so the bound is a sixteenth of the length the
	// reference claims: far above that noise, far below the length.
	const claimed = 1 << 30
	v := appendRef(nil, ref{id: 1, off: size - 10, n: claimed})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err = s.readRef("hot", 5, v)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(claimed/16), "a damaged reference allocated its length")
}

// crashBeforeIngest takes a crash image when a flush starts writing its
// sstables: the link exists, its record and references do not.
type crashBeforeIngest struct {
	*vfs.MemFS
	crashImage
}

func (fs *crashBeforeIngest) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.Contains(name, ingestPrefix) {
		fs.take(fs.MemFS)
	}
	return fs.MemFS.Create(name, c)
}

// TestOpenCollectsWhatACrashLeft checks what a crash in a linking flush
// leaves: links without a record. Open removes them, and a replay of the
// WAL file links it again.
func TestOpenCollectsWhatACrashLeft(t *testing.T) {
	e := newLinkEnv(t)
	fs := &crashBeforeIngest{MemFS: e.fs}
	s := e.open(fs)
	hot := bigEntries(1, 1, 20, 1<<10)
	e.write("hot", hot)
	cf := e.closeFile()
	_, err := s.FlushFile(cf)
	require.NoError(t, err)
	require.NotNil(t, fs.image())
	require.NoError(t, s.Close())
	// The link was not synced yet; a file system may keep it anyway.
	orphan, err := fs.image().Create("/seg/"+linkName(77), vfs.WriteCategoryUnspecified)
	require.NoError(t, err)
	require.NoError(t, orphan.Close())

	s2 := e.open(fs.image())
	require.Empty(t, linkedNames(t, fs.image()), "links without a record stay")
	_, _, ok, err := s2.Bounds("hot")
	require.NoError(t, err)
	require.False(t, ok)

	// The WAL file is in the image too: its replay links it anew.
	cf.Path = "/wal/" + cf.Path[strings.LastIndex(cf.Path, "/")+1:]
	_, err = s2.FlushFile(cf)
	require.NoError(t, err)
	requireEntries(t, s2, "hot", hot)
	require.NoError(t, s2.Close())
}

// TestOpenRefusesAMissingLinkedFile checks that losing a linked file that
// entries still refer to stops Open instead of losing them quietly.
func TestOpenRefusesAMissingLinkedFile(t *testing.T) {
	e := newLinkEnv(t)
	s := e.open(e.fs)
	e.write("hot", bigEntries(1, 1, 20, 1<<10))
	_, err := s.FlushFile(e.closeFile())
	require.NoError(t, err)
	require.NoError(t, s.Close())
	names := linkedNames(t, e.fs)
	require.Len(t, names, 1)
	require.NoError(t, e.fs.Remove("/seg/"+names[0]))
	_, err = Open("/seg", Options{FS: e.fs})
	require.ErrorIs(t, err, ErrCorrupt)
}

// TestLinkDurableWithItsReferences crashes right after a linking flush's
// ingest: the link must have been made durable with the references,
// although the flush never syncs the directory for it alone.
func TestLinkDurableWithItsReferences(t *testing.T) {
	e := newLinkEnv(t)
	fs := &crashAtIngestCleanup{MemFS: e.fs}
	s := e.open(fs)
	hot := bigEntries(1, 1, 20, 1<<10)
	e.write("hot", hot)
	_, err := s.FlushFile(e.closeFile())
	require.NoError(t, err)
	require.NotNil(t, fs.image())
	require.NoError(t, s.Close())
	s2 := e.open(fs.image())
	defer s2.Close()
	require.Len(t, linkedNames(t, fs.image()), 1)
	requireEntries(t, s2, "hot", hot)
}

// TestOpenRefusesANewerFormat checks that a store a newer version wrote
// in a format this one does not know is refused, not misread.
func TestOpenRefusesANewerFormat(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs)
	format, err := s.readUvarint(formatKey)
	require.NoError(t, err)
	require.Zero(t, format, "a store without references keeps the first format")
	require.NoError(t, s.db.Set(formatKey, []byte{byte(formatLinked + 1)}, pebble.NoSync))
	require.NoError(t, s.Close())
	_, err = Open("/seg", Options{FS: fs})
	require.ErrorIs(t, err, ErrFormat)
}

// readCounter counts the bytes read from linked files.
type readCounter struct {
	vfs.FS
	n *atomic.Int64
}

func (fs readCounter) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !strings.Contains(name, linkPrefix) {
		return f, err
	}
	return countedFile{File: f, n: fs.n}, nil
}

type countedFile struct {
	vfs.File
	n *atomic.Int64
}

func (f countedFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.n.Add(int64(n))
	return n, err
}

func (f countedFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.n.Add(int64(n))
	return n, err
}

// TestLinkUsesTheWALsOffsets checks that a flush links a WAL file from the
// record offsets the WAL handed over, reading back only the two records
// it checks, and that the references are right where the file holds
// overwritten records and prefixed entries.
func TestLinkUsesTheWALsOffsets(t *testing.T) {
	e := newLinkEnv(t)
	var read atomic.Int64
	s := e.open(readCounter{FS: e.fs, n: &read})
	defer s.Close()
	e.write("hot", bigEntries(1, 1, 40, 1<<10))
	e.write("cold", entries(1, 1, 2))
	e.write("hot", bigEntries(30, 2, 16, 1<<10)) // overwrites 30..40 in the same file
	prefixed := bigEntries(46, 2, 5, 1<<10)
	for i := range prefixed {
		prefixed[i].Prefix, prefixed[i].Prefixed = byte(i), true
	}
	e.write("hot", prefixed)
	cf := e.closeFile()
	_, err := s.FlushFile(cf)
	require.NoError(t, err)
	require.EqualValues(t, 1, s.Stats().Linked)
	require.Less(t, read.Load(), int64(4<<10), "the flush read the file back")
	for _, tb := range cf.Tables {
		tb.Log.DropFile(cf.Seq)
	}
	require.NoError(t, cf.Remove())

	want := append(bigEntries(1, 1, 29, 1<<10), bigEntries(30, 2, 16, 1<<10)...)
	for i, p := range prefixed {
		want = append(want, wal.Entry{Index: p.Index, Term: p.Term, Payload: append([]byte{byte(i)}, p.Payload...)})
	}
	requireEntries(t, s, "hot", want)
	requireEntries(t, s, "cold", entries(1, 1, 2))
}

// TestRunIsCopiedWhenItCannotBeLinked checks that a run is copied from the
// mem tables, and no linked file is left, when the WAL file's bytes do not
// hold what the offsets say (its last record was damaged after it was
// written) and when the entries do not say where their records are (built
// by PackEntries, not written by the WAL).
func TestRunIsCopiedWhenItCannotBeLinked(t *testing.T) {
	for name, spoil := range map[string]func(*testing.T, *linkEnv, *wal.ClosedFile) *wal.ClosedFile{
		"damaged": func(t *testing.T, e *linkEnv, cf *wal.ClosedFile) *wal.ClosedFile {
			damageLastPayload(t, e.fs, cf.Path)
			return cf
		},
		"no offsets": func(_ *testing.T, _ *linkEnv, cf *wal.ClosedFile) *wal.ClosedFile {
			packed := &wal.ClosedFile{Seq: cf.Seq, Path: cf.Path}
			for _, tb := range cf.Tables {
				tb.Entries = wal.PackEntries(slices.Collect(tb.Entries.All())...)
				packed.Tables = append(packed.Tables, tb)
			}
			return packed
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newLinkEnv(t)
			s := e.open(e.fs)
			defer s.Close()
			hot := bigEntries(1, 1, 20, 1<<10)
			e.write("hot", hot)
			cf := e.closeFile()
			_, err := s.FlushFile(spoil(t, e, cf))
			require.NoError(t, err)
			require.Zero(t, s.Stats().Linked)
			require.Empty(t, linkedNames(t, e.fs), "a failed link left its file behind")
			for _, tb := range cf.Tables {
				tb.Log.DropFile(cf.Seq)
			}
			require.NoError(t, cf.Remove())
			requireEntries(t, s, "hot", hot)
		})
	}
}
