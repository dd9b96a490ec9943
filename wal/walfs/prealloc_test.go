package walfs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// fsCase is one of the three implementations, fresh, with a directory to
// use and, where it can crash, a way to see what a crash would leave.
type fsCase struct {
	name  string
	fs    FS
	dir   string
	crash func() FS // nil: cannot crash
}

// threeFileSystems returns the OS's, Mem and FromVFS over a crashable
// pebble MemFS.
func threeFileSystems(t *testing.T) []fsCase {
	crashable := vfs.NewCrashableMem()
	mem := NewMem()
	return []fsCase{
		{"mem", mem, "/d", func() FS { return mem.Crash(nil) }},
		{"vfs", FromVFS(crashable), "/d", func() FS { return FromVFS(crashable.CrashClone(vfs.CrashCloneCfg{})) }},
		{"os", OS(), t.TempDir(), nil},
	}
}

// TestPreallocator runs the same life of a spare over the three file
// systems: zeros made durable, adopted under a new name, written over from
// the start, cut. Where the file system can crash, it checks what survives:
// the rename only after SyncDir, the writes only after a sync, and the
// zeros in place of the writes that were lost.
func TestPreallocator(t *testing.T) {
	for _, tc := range threeFileSystems(t) {
		t.Run(tc.name, func(t *testing.T) {
			pre, ok := tc.fs.(Preallocator)
			require.True(t, ok)
			require.NoError(t, tc.fs.MkdirAll(tc.dir))
			require.NoError(t, tc.fs.SyncDir(filepath.Dir(tc.dir)))
			spare, name := filepath.Join(tc.dir, "spare"), filepath.Join(tc.dir, "file")
			const size = 3<<20 + 5 // more than one chunk of zeros, not a multiple
			require.NoError(t, pre.Preallocate(spare, size, nil))
			data, err := tc.fs.ReadFile(spare)
			require.NoError(t, err)
			require.Len(t, data, size)
			require.Zero(t, bytes.Count(data, []byte{0})-size, "all zeros")
			require.NoError(t, tc.fs.SyncDir(tc.dir))

			f, err := pre.Adopt(spare, name)
			require.NoError(t, err)
			_, err = f.Write([]byte("hello"))
			require.NoError(t, err)
			require.NoError(t, f.Datasync())
			_, err = f.Write([]byte("-more"))
			require.NoError(t, err)
			data, err = tc.fs.ReadFile(name)
			require.NoError(t, err)
			require.Len(t, data, size, "writes replace zeros; the size stays")
			require.Equal(t, "hello-more", string(data[:10]))
			require.Zero(t, bytes.Count(data[10:], []byte{0})-(size-10))
			names, err := tc.fs.List(tc.dir)
			require.NoError(t, err)
			require.Equal(t, []string{"file"}, names)

			if tc.crash != nil {
				// The rename is not durable yet: the spare survives, with
				// the synced write in it.
				c := tc.crash()
				names, err := c.List(tc.dir)
				require.NoError(t, err)
				require.Equal(t, []string{"spare"}, names)
				data, err := c.ReadFile(filepath.Join(tc.dir, "spare"))
				require.NoError(t, err)
				require.Len(t, data, size)
				require.Equal(t, "hello", string(data[:5]))

				require.NoError(t, tc.fs.SyncDir(tc.dir))
				data, err = tc.crash().ReadFile(name)
				require.NoError(t, err)
				require.Len(t, data, size)
				require.Equal(t, "hello", string(data[:5]))
				require.Zero(t, bytes.Count(data[5:], []byte{0})-(size-5), "the unsynced write reads as the zeros it replaced")
			}
			require.NoError(t, f.Close())
			require.NoError(t, tc.fs.Truncate(name, 10))
			data, err = tc.fs.ReadFile(name)
			require.NoError(t, err)
			require.Equal(t, "hello-more", string(data))
		})
	}
}

// TestMemPreallocateCapacityAndFaults: a spare takes its size from the
// capacity at once, writes over its zeros take nothing more, and the
// create, write and sync faults reach it.
func TestMemPreallocateCapacityAndFaults(t *testing.T) {
	m := NewMem()
	require.NoError(t, m.MkdirAll("/d"))
	m.SetCapacity(100)
	require.ErrorIs(t, m.Preallocate("/d/big", 101, nil), syscall.ENOSPC)
	require.NoError(t, m.Preallocate("/d/s", 60, nil))
	f, err := m.Adopt("/d/s", "/d/f")
	require.NoError(t, err)
	_, err = f.Write(make([]byte, 90))
	require.NoError(t, err, "60 bytes over zeros and 30 new ones fit in 100")
	_, err = f.Write(make([]byte, 11))
	require.ErrorIs(t, err, syscall.ENOSPC)

	m.SetCapacity(0)
	stop := errors.New("stop")
	require.ErrorIs(t, m.Preallocate("/d/c", 1, func(int64) error { return stop }), stop)
	_, err = m.ReadFile("/d/c")
	require.ErrorIs(t, err, fs.ErrNotExist, "a failed preallocation leaves nothing")
	for _, op := range []Op{OpCreate, OpWrite, OpSync} {
		m.SetFault(func(got Op, name string) error {
			if got == op {
				return syscall.EIO
			}
			return nil
		})
		require.ErrorIs(t, m.Preallocate("/d/x", 1, nil), syscall.EIO, op.String())
	}
	m.SetFault(nil)
	require.NoError(t, m.Preallocate("/d/s2", 1, nil))
	m.SetFault(func(got Op, name string) error {
		if got == OpCreate {
			return syscall.EIO
		}
		return nil
	})
	_, err = m.Adopt("/d/s2", "/d/g")
	require.ErrorIs(t, err, syscall.EIO, "Adopt creates a name")
	m.SetFault(nil)
	_, err = m.Adopt("/d/missing", "/d/g")
	require.ErrorIs(t, err, fs.ErrNotExist)
	_, err = m.Adopt("/d/f", "/d/g")
	require.ErrorIs(t, err, fs.ErrInvalid, "only an unwritten spare can be adopted")
}

// TestRecycle runs the life of a recycled file over the three file
// systems: a synced file renamed to a free name with its bytes, adopted,
// written over from the start, the old bytes still after the new ones.
// Where the file system can crash, the rename is durable only after
// SyncDir, and bytes a crash drops read as the old ones again.
func TestRecycle(t *testing.T) {
	for _, tc := range threeFileSystems(t) {
		t.Run(tc.name, func(t *testing.T) {
			pre := tc.fs.(Preallocator)
			require.NoError(t, tc.fs.MkdirAll(tc.dir))
			require.NoError(t, tc.fs.SyncDir(filepath.Dir(tc.dir)))
			old, free, name := filepath.Join(tc.dir, "old"), filepath.Join(tc.dir, "free"), filepath.Join(tc.dir, "new")
			oldBytes := bytes.Repeat([]byte("0123456789"), 1000)
			f, err := tc.fs.Create(old)
			require.NoError(t, err)
			_, err = f.Write(oldBytes)
			require.NoError(t, err)
			require.NoError(t, f.Sync())
			require.NoError(t, f.Close())
			require.NoError(t, tc.fs.SyncDir(tc.dir))

			require.NoError(t, pre.Recycle(old, free))
			if tc.crash != nil {
				names, err := tc.crash().List(tc.dir)
				require.NoError(t, err)
				require.Equal(t, []string{"old"}, names, "the rename is not durable before SyncDir")
			}
			require.NoError(t, tc.fs.SyncDir(tc.dir))
			g, err := pre.Adopt(free, name)
			require.NoError(t, err)
			_, err = g.Write([]byte("new"))
			require.NoError(t, err)
			require.NoError(t, g.Datasync())
			_, err = g.Write([]byte("er"))
			require.NoError(t, err)
			require.NoError(t, tc.fs.SyncDir(tc.dir))
			data, err := tc.fs.ReadFile(name)
			require.NoError(t, err)
			require.Len(t, data, len(oldBytes), "writes replace old bytes; the size stays")
			require.Equal(t, "newer", string(data[:5]))
			require.Equal(t, oldBytes[5:], data[5:])
			if tc.crash != nil {
				data, err := tc.crash().ReadFile(name)
				require.NoError(t, err)
				require.Equal(t, "new34", string(data[:5]), "the unsynced write reads as the old bytes it replaced")
				require.Equal(t, oldBytes[5:], data[5:])
			}
			require.NoError(t, g.Close())
			require.NoError(t, tc.fs.Truncate(name, 5))
			data, err = tc.fs.ReadFile(name)
			require.NoError(t, err)
			require.Equal(t, "newer", string(data))
		})
	}
}

// TestRecycleRefusesALinkedFile: a file another name links to (the
// segment store keeps closed WAL files that way) is not the WAL's to
// write over.
func TestRecycleRefusesALinkedFile(t *testing.T) {
	dir := t.TempDir()
	name, other, free := filepath.Join(dir, "wal"), filepath.Join(dir, "kept"), filepath.Join(dir, "free")
	require.NoError(t, os.WriteFile(name, []byte("entries"), 0o644))
	require.NoError(t, os.Link(name, other))
	for _, fsys := range []FS{OS(), FromVFS(vfs.Default)} {
		err := fsys.(Preallocator).Recycle(name, free)
		require.ErrorIs(t, err, ErrLinked)
		_, err = os.Stat(free)
		require.ErrorIs(t, err, fs.ErrNotExist, "nothing was renamed")
	}
	require.NoError(t, os.Remove(other))
	require.NoError(t, OS().(Preallocator).Recycle(name, free))
	data, err := os.ReadFile(free)
	require.NoError(t, err)
	require.Equal(t, "entries", string(data))
}

// TestReclaim takes back a file kept in another directory: accept sees
// its head before anything is renamed and can refuse it; a file with
// another link, or on a file system that cannot count links (an
// in-memory vfs), is refused; a taken file keeps its bytes under the new
// name and starts a file over them as a recycled one does.
func TestReclaim(t *testing.T) {
	dir := t.TempDir()
	kept, other := filepath.Join(dir, "store", "kept"), filepath.Join(dir, "store", "other")
	free := filepath.Join(dir, "wal", "free")
	require.NoError(t, os.MkdirAll(filepath.Dir(kept), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Dir(free), 0o755))
	body := bytes.Repeat([]byte("0123456789"), 100)
	require.NoError(t, os.WriteFile(kept, body, 0o644))
	require.NoError(t, os.Link(kept, other))
	var heads []string
	accept := func(head []byte) error { heads = append(heads, string(head)); return nil }
	for _, fsys := range []FS{OS(), FromVFS(vfs.Default)} {
		require.ErrorIs(t, fsys.(Preallocator).Reclaim(kept, free, 4, accept), ErrLinked)
	}
	require.Empty(t, heads, "a linked file is refused before its head is read")
	require.NoError(t, os.Remove(other))

	refusal := errors.New("not one of ours")
	for _, fsys := range []FS{OS(), FromVFS(vfs.Default)} {
		err := fsys.(Preallocator).Reclaim(kept, free, 4, func(head []byte) error {
			require.Equal(t, "0123", string(head))
			return refusal
		})
		require.ErrorIs(t, err, refusal)
		_, err = os.Stat(free)
		require.ErrorIs(t, err, fs.ErrNotExist, "nothing was renamed")
	}
	require.NoError(t, FromVFS(vfs.Default).(Preallocator).Reclaim(kept, free, 4000, accept))
	require.Equal(t, []string{string(body)}, heads, "a shorter file gives what it has")
	data, err := os.ReadFile(free)
	require.NoError(t, err)
	require.Equal(t, body, data)
	_, err = os.Stat(kept)
	require.ErrorIs(t, err, fs.ErrNotExist)

	mfs := vfs.NewMem()
	require.NoError(t, mfs.MkdirAll("/d", 0o755))
	f, err := mfs.Create("/d/kept", vfs.WriteCategoryUnspecified)
	require.NoError(t, err)
	_, err = f.Write(bytes.Clone(body)) // pebble's MemFS scrambles what it was given in race builds
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.ErrorIs(t, FromVFS(mfs).(Preallocator).Reclaim("/d/kept", "/d/free", 4, accept), ErrLinked,
		"an in-memory vfs cannot say how many names a file has")

	m := NewMem()
	require.NoError(t, m.MkdirAll("/store"))
	require.NoError(t, m.MkdirAll("/wal"))
	g, err := m.Create("/store/kept")
	require.NoError(t, err)
	_, err = g.Write(body)
	require.NoError(t, err)
	require.NoError(t, g.Datasync())
	require.NoError(t, g.Close())
	require.ErrorIs(t, m.Reclaim("/store/kept", "/wal/free", 4, func([]byte) error { return refusal }), refusal)
	require.NoError(t, m.Reclaim("/store/kept", "/wal/free", 4, accept))
	require.Equal(t, "0123", heads[len(heads)-1])
	h, err := m.Adopt("/wal/free", "/wal/new")
	require.NoError(t, err)
	_, err = h.Write([]byte("new"))
	require.NoError(t, err)
	data, err = m.ReadFile("/wal/new")
	require.NoError(t, err)
	require.Equal(t, append([]byte("new"), body[3:]...), data, "the old bytes stay after the new ones")
}
