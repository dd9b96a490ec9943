package walfs

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// TestPreallocator runs the same life of a spare over the three file
// systems: zeros made durable, adopted under a new name, written over from
// the start, cut. Where the file system can crash, it checks what survives:
// the rename only after SyncDir, the writes only after a sync, and the
// zeros in place of the writes that were lost.
func TestPreallocator(t *testing.T) {
	crashable := vfs.NewCrashableMem()
	mem := NewMem()
	for _, tc := range []struct {
		name  string
		fs    FS
		dir   string
		crash func() FS // nil: cannot crash
	}{
		{"mem", mem, "/d", func() FS { return mem.Crash(nil) }},
		{"vfs", FromVFS(crashable), "/d", func() FS { return FromVFS(crashable.CrashClone(vfs.CrashCloneCfg{})) }},
		{"os", OS(), t.TempDir(), nil},
	} {
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
