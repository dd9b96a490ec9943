package snapshot

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// TestFromVFSOperations runs every FS and File operation over an
// in-memory vfs and over the operating system's (which truncates natively
// where the in-memory one copies and renames).
func TestFromVFSOperations(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   vfs.FS
		dir  string
	}{
		{"mem", vfs.NewMem(), "/data/snapshots"},
		{"os", vfs.Default, filepath.Join(t.TempDir(), "snapshots")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := FromVFS(tc.fs)
			udir := filepath.Join(tc.dir, "u1")
			require.NoError(t, s.MkdirAll(udir))
			require.NoError(t, s.SyncDir(tc.dir))
			a := filepath.Join(udir, "a")

			_, err := s.OpenFile(filepath.Join(tc.dir, "missing", "x"), os.O_RDWR|os.O_CREATE|os.O_EXCL)
			require.ErrorIs(t, err, fs.ErrNotExist, "no parent directory")
			f, err := s.OpenFile(a, os.O_RDWR|os.O_CREATE|os.O_EXCL)
			require.NoError(t, err)
			_, err = s.OpenFile(a, os.O_RDWR|os.O_CREATE|os.O_EXCL)
			require.ErrorIs(t, err, fs.ErrExist)
			_, err = f.Write([]byte("0123456789"))
			require.NoError(t, err)
			require.NoError(t, f.Sync())
			require.NoError(t, f.Close())

			f, err = s.OpenFile(a, os.O_RDONLY)
			require.NoError(t, err)
			n, err := f.Seek(0, io.SeekEnd)
			require.NoError(t, err)
			require.Equal(t, int64(10), n)
			_, err = f.Seek(2, io.SeekStart)
			require.NoError(t, err)
			got, err := io.ReadAll(f)
			require.NoError(t, err)
			require.Equal(t, "23456789", string(got))
			b := make([]byte, 3)
			_, err = f.ReadAt(b, 7)
			require.NoError(t, err)
			require.Equal(t, "789", string(b))
			_, err = f.ReadAt(b, 8)
			require.ErrorIs(t, err, io.EOF)
			_, err = f.Write([]byte("x"))
			require.Error(t, err, "read-only")
			require.NoError(t, f.Close())

			// Resume as the receiver does: cut, seek, write on.
			f, err = s.OpenFile(a, os.O_RDWR)
			require.NoError(t, err)
			require.NoError(t, f.Truncate(4))
			_, err = f.Seek(4, io.SeekStart)
			require.NoError(t, err)
			_, err = f.Write([]byte("ab"))
			require.NoError(t, err)
			require.NoError(t, f.Sync())
			_, err = f.Seek(0, io.SeekStart)
			require.NoError(t, err)
			got, err = io.ReadAll(f)
			require.NoError(t, err)
			require.Equal(t, "0123ab", string(got))
			require.NoError(t, f.Close())

			// O_TRUNC empties an existing file; O_RDWR alone does not create.
			f, err = s.OpenFile(a, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
			require.NoError(t, err)
			n, err = f.Seek(0, io.SeekEnd)
			require.NoError(t, err)
			require.Zero(t, n)
			_, err = f.Write([]byte("new"))
			require.NoError(t, err)
			require.NoError(t, f.Sync())
			require.NoError(t, f.Close())
			_, err = s.OpenFile(filepath.Join(udir, "b"), os.O_RDWR)
			require.ErrorIs(t, err, fs.ErrNotExist)
			_, err = s.OpenFile(filepath.Join(udir, "b"), os.O_RDWR|os.O_APPEND|os.O_CREATE)
			require.ErrorIs(t, err, errors.ErrUnsupported)

			require.NoError(t, s.Rename(a, filepath.Join(udir, "c")))
			require.NoError(t, s.MkdirAll(filepath.Join(udir, "sub")))
			f, err = s.OpenFile(filepath.Join(udir, "b"), os.O_RDWR|os.O_CREATE|os.O_EXCL)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			ents, err := s.ReadDir(udir)
			require.NoError(t, err)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
				require.Equal(t, e.Name() == "sub", e.IsDir(), e.Name())
			}
			require.Equal(t, []string{"b", "c", "sub"}, names, "sorted, no temporary file left")
			f, err = s.OpenFile(filepath.Join(udir, "c"), os.O_RDONLY)
			require.NoError(t, err)
			got, err = io.ReadAll(f)
			require.NoError(t, err)
			require.Equal(t, "new", string(got))
			require.NoError(t, f.Close())

			require.NoError(t, s.Remove(filepath.Join(udir, "b")))
			require.ErrorIs(t, s.Remove(filepath.Join(udir, "b")), fs.ErrNotExist)
			require.NoError(t, s.RemoveAll(udir))
			require.NoError(t, s.RemoveAll(udir), "a missing path is no error")
			_, err = s.ReadDir(udir)
			require.ErrorIs(t, err, fs.ErrNotExist)
		})
	}
}

// TestFromVFSCrashClone shows the durability rules over a crashable vfs:
// synced bytes and synced names survive a crash, unsynced ones need not,
// and a truncate is durable after Sync however the adapter made it.
func TestFromVFSCrashClone(t *testing.T) {
	m := vfs.NewCrashableMem()
	s := FromVFS(m)
	require.NoError(t, s.MkdirAll("/d"))
	require.NoError(t, s.SyncDir("/"))
	f, err := s.OpenFile("/d/a.tmp", os.O_RDWR|os.O_CREATE|os.O_EXCL)
	require.NoError(t, err)
	_, err = f.Write([]byte("synced"))
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	_, err = f.Write([]byte("-lost"))
	require.NoError(t, err)
	read := func(c *vfs.MemFS, name string) string {
		t.Helper()
		f, err := FromVFS(c).OpenFile(name, os.O_RDONLY)
		require.NoError(t, err)
		defer f.Close()
		b, err := io.ReadAll(f)
		require.NoError(t, err)
		return string(b)
	}
	list := func(c *vfs.MemFS) []string {
		t.Helper()
		ents, err := FromVFS(c).ReadDir("/d")
		require.NoError(t, err)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}

	require.Empty(t, list(m.CrashClone(vfs.CrashCloneCfg{})), "the name needs SyncDir")
	require.NoError(t, s.SyncDir("/d"))
	require.Equal(t, "synced", read(m.CrashClone(vfs.CrashCloneCfg{}), "/d/a.tmp"), "only the synced bytes")
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		got := read(m.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng}), "/d/a.tmp")
		require.True(t, got == "synced" || got == "synced-lost", "got %q", got)
	}
	require.Equal(t, "synced-lost", read(m.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng}), "/d/a.tmp"))

	// A truncate is durable once the file is synced, not before.
	require.NoError(t, f.Sync())
	require.NoError(t, f.Truncate(4))
	require.Equal(t, "synced-lost", read(m.CrashClone(vfs.CrashCloneCfg{}), "/d/a.tmp"))
	require.NoError(t, f.Sync())
	require.Equal(t, "sync", read(m.CrashClone(vfs.CrashCloneCfg{}), "/d/a.tmp"))
	require.Equal(t, []string{"a.tmp"}, list(m.CrashClone(vfs.CrashCloneCfg{})), "no temporary file left")
	require.NoError(t, f.Close())

	// So is an O_TRUNC that replaces a file.
	f, err = s.OpenFile("/d/a.tmp", os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	require.NoError(t, err)
	_, err = f.Write([]byte("fresh"))
	require.NoError(t, err)
	require.Equal(t, "sync", read(m.CrashClone(vfs.CrashCloneCfg{}), "/d/a.tmp"))
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	require.Equal(t, "fresh", read(m.CrashClone(vfs.CrashCloneCfg{}), "/d/a.tmp"))

	// A rename and a removal are durable only after SyncDir.
	require.NoError(t, s.Rename("/d/a.tmp", "/d/a.snap"))
	require.Equal(t, []string{"a.tmp"}, list(m.CrashClone(vfs.CrashCloneCfg{})))
	require.NoError(t, s.SyncDir("/d"))
	require.Equal(t, []string{"a.snap"}, list(m.CrashClone(vfs.CrashCloneCfg{})))
	require.NoError(t, s.Remove("/d/a.snap"))
	require.Equal(t, []string{"a.snap"}, list(m.CrashClone(vfs.CrashCloneCfg{})))
	require.NoError(t, s.SyncDir("/d"))
	require.Empty(t, list(m.CrashClone(vfs.CrashCloneCfg{})))
}

// TestStoreOverVFSSurvivesACrash writes snapshots through a Store over a
// crashable vfs and opens a store on a crash clone: a committed snapshot
// is there, whole.
func TestStoreOverVFSSurvivesACrash(t *testing.T) {
	m := vfs.NewCrashableMem()
	require.NoError(t, m.MkdirAll("/node/snapshots", 0o755))
	for _, d := range []string{"/", "/node"} {
		require.NoError(t, FromVFS(m).SyncDir(d))
	}
	s := openStore(t, "/node/snapshots", Options{FS: FromVFS(m), BlockBytes: 64})
	data := pattern(7, 1000)
	info := writeSnap(t, s, "u1", 10, 2, []byte("meta"), data, 100)
	// An uncommitted one leaves at most a temporary file, which the next
	// open removes.
	p, err := s.Begin("u1", 20, 2, nil)
	require.NoError(t, err)
	_, err = p.Write(pattern(8, 500))
	require.NoError(t, err)

	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 10 {
		c := m.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 10 * i, RNG: rng})
		s2 := openStore(t, "/node/snapshots", Options{FS: FromVFS(c)})
		got, _, err := s2.Latest("u1")
		require.NoError(t, err)
		require.Equal(t, info, got)
		meta, gotData, err := readAll(s2, got)
		require.NoError(t, err)
		require.Equal(t, "meta", string(meta))
		require.Equal(t, data, gotData)
		ents, err := FromVFS(c).ReadDir("/node/snapshots/u1")
		require.NoError(t, err)
		require.Len(t, ents, 1, "only the snapshot is left")
	}
	p.Abort()
}
