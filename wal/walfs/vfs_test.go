package walfs

import (
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// TestFromVFSOperations runs every FS operation over an in-memory vfs and
// over the operating system's (which truncates natively where the
// in-memory one copies and renames).
func TestFromVFSOperations(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   vfs.FS
		dir  string
	}{
		{"mem", vfs.NewMem(), "/data/wal"},
		{"os", vfs.Default, filepath.Join(t.TempDir(), "wal")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := FromVFS(tc.fs)
			require.NoError(t, w.MkdirAll(tc.dir))
			a, b := filepath.Join(tc.dir, "a"), filepath.Join(tc.dir, "b")
			for _, name := range []string{b, a} {
				f, err := w.Create(name)
				require.NoError(t, err)
				n, err := f.Write([]byte("hello, "))
				require.NoError(t, err)
				require.Equal(t, 7, n)
				_, err = f.Write([]byte("world"))
				require.NoError(t, err)
				require.NoError(t, f.Datasync())
				require.NoError(t, f.Sync())
				require.NoError(t, f.Close())
			}
			require.NoError(t, w.SyncDir(tc.dir))
			names, err := w.List(tc.dir)
			require.NoError(t, err)
			require.Equal(t, []string{"a", "b"}, names, "sorted")

			data, err := w.ReadFile(a)
			require.NoError(t, err)
			require.Equal(t, "hello, world", string(data))

			require.NoError(t, w.Truncate(a, 5))
			data, err = w.ReadFile(a)
			require.NoError(t, err)
			require.Equal(t, "hello", string(data))
			names, err = w.List(tc.dir)
			require.NoError(t, err)
			require.Equal(t, []string{"a", "b"}, names, "no temporary file left")

			// Create truncates an existing file.
			f, err := w.Create(b)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			data, err = w.ReadFile(b)
			require.NoError(t, err)
			require.Empty(t, data)

			require.NoError(t, w.Remove(b))
			names, err = w.List(tc.dir)
			require.NoError(t, err)
			require.Equal(t, []string{"a"}, names)

			_, err = w.ReadFile(b)
			require.ErrorIs(t, err, fs.ErrNotExist)
			require.ErrorIs(t, w.Truncate(b, 0), fs.ErrNotExist, "truncate does not create")
			require.ErrorIs(t, w.Remove(b), fs.ErrNotExist)
			_, err = w.List(filepath.Join(tc.dir, "missing"))
			require.ErrorIs(t, err, fs.ErrNotExist)
		})
	}
}

// TestFromVFSCrashClone shows the durability rules over a crashable vfs:
// synced bytes and synced names survive a crash, unsynced ones need not.
func TestFromVFSCrashClone(t *testing.T) {
	m := vfs.NewCrashableMem()
	w := FromVFS(m)
	require.NoError(t, w.MkdirAll("/d"))
	require.NoError(t, w.SyncDir("/"))
	f, err := w.Create("/d/a")
	require.NoError(t, err)
	_, err = f.Write([]byte("synced"))
	require.NoError(t, err)
	require.NoError(t, f.Datasync())
	_, err = f.Write([]byte("-lost"))
	require.NoError(t, err)
	g, err := w.Create("/d/b")
	require.NoError(t, err)
	_, err = g.Write([]byte("full"))
	require.NoError(t, err)
	require.NoError(t, g.Sync())

	// Without SyncDir no name survives, synced data or not.
	c := FromVFS(m.CrashClone(vfs.CrashCloneCfg{}))
	names, err := c.List("/d")
	require.NoError(t, err)
	require.Empty(t, names)

	require.NoError(t, w.SyncDir("/d"))
	c = FromVFS(m.CrashClone(vfs.CrashCloneCfg{}))
	data, err := c.ReadFile("/d/a")
	require.NoError(t, err)
	require.Equal(t, "synced", string(data), "only the synced bytes")
	data, err = c.ReadFile("/d/b")
	require.NoError(t, err)
	require.Equal(t, "full", string(data))

	// Unsynced data may survive too, never at the cost of synced data.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		data, err := FromVFS(m.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rng})).ReadFile("/d/a")
		require.NoError(t, err)
		require.True(t, string(data) == "synced" || string(data) == "synced-lost", "got %q", data)
	}
	data, err = FromVFS(m.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rng})).ReadFile("/d/a")
	require.NoError(t, err)
	require.Equal(t, "synced-lost", string(data))

	// Truncate is durable when it returns.
	require.NoError(t, f.Close())
	require.NoError(t, w.Truncate("/d/a", 4))
	data, err = FromVFS(m.CrashClone(vfs.CrashCloneCfg{})).ReadFile("/d/a")
	require.NoError(t, err)
	require.Equal(t, "sync", string(data))

	// A removal is durable only after SyncDir.
	require.NoError(t, w.Remove("/d/b"))
	names, err = FromVFS(m.CrashClone(vfs.CrashCloneCfg{})).List("/d")
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, names)
	require.NoError(t, w.SyncDir("/d"))
	names, err = FromVFS(m.CrashClone(vfs.CrashCloneCfg{})).List("/d")
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, names)
}

// TestFromVFSCallsReachTheVFS checks that each sync is the matching vfs
// call and that Write leaves the caller's buffer alone even when the vfs
// file scribbles on it, as vfs.File.Write may.
func TestFromVFSCallsReachTheVFS(t *testing.T) {
	r := &recordingFS{FS: vfs.NewMem()}
	w := FromVFS(r)
	require.NoError(t, w.MkdirAll("/d"))
	f, err := w.Create("/d/a")
	require.NoError(t, err)
	p := []byte("batch")
	_, err = f.Write(p)
	require.NoError(t, err)
	require.Equal(t, "batch", string(p))
	require.NoError(t, f.Datasync())
	require.NoError(t, f.Sync())
	require.NoError(t, w.SyncDir("/d"))
	require.NoError(t, f.Close())
	require.Equal(t, []string{"write /d/a", "syncdata /d/a", "sync /d/a", "opendir /d", "sync /d"}, r.calls())
}

// recordingFS records the writes and syncs of its files, and flips the
// bits of every buffer given to Write after writing it.
type recordingFS struct {
	vfs.FS
	mu  sync.Mutex
	log []string
}

func (r *recordingFS) record(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, s)
}

func (r *recordingFS) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

func (r *recordingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := r.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return &recordingFile{File: f, fs: r, name: name}, nil
}

func (r *recordingFS) OpenDir(name string) (vfs.File, error) {
	r.record("opendir " + name)
	f, err := r.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return &recordingFile{File: f, fs: r, name: name}, nil
}

type recordingFile struct {
	vfs.File
	fs   *recordingFS
	name string
}

func (f *recordingFile) Write(p []byte) (int, error) {
	f.fs.record("write " + f.name)
	n, err := f.File.Write(p)
	for i := range p {
		p[i] ^= 0xff
	}
	return n, err
}

func (f *recordingFile) Sync() error {
	f.fs.record("sync " + f.name)
	return f.File.Sync()
}

func (f *recordingFile) SyncData() error {
	f.fs.record("syncdata " + f.name)
	return f.File.SyncData()
}
