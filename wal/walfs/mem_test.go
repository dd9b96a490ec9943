package walfs

import (
	"errors"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMemCrashKeepsOnlyDurableState(t *testing.T) {
	m := NewMem()
	require.NoError(t, m.MkdirAll("/d"))
	f, err := m.Create("/d/a")
	require.NoError(t, err)
	_, err = f.Write([]byte("synced"))
	require.NoError(t, err)
	require.NoError(t, f.Datasync())
	_, err = f.Write([]byte("-lost"))
	require.NoError(t, err)
	g, err := m.Create("/d/b")
	require.NoError(t, err)
	require.NoError(t, g.Sync())

	// Without SyncDir neither name survives.
	c := m.Crash(nil)
	names, err := c.List("/d")
	require.NoError(t, err)
	require.Empty(t, names)

	require.NoError(t, m.SyncDir("/d"))
	c = m.Crash(nil)
	data, err := c.ReadFile("/d/a")
	require.NoError(t, err)
	require.Equal(t, "synced", string(data))

	// A torn crash keeps the synced prefix and at most the unsynced bytes.
	for seed := uint64(0); seed < 20; seed++ {
		data, err := m.Crash(rand.New(rand.NewPCG(seed, 0))).ReadFile("/d/a")
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(data), len("synced"))
		require.LessOrEqual(t, len(data), len("synced-lost"))
		require.Equal(t, "synced", string(data[:6]))
	}

	// A removal is undone by a crash until the directory is synced.
	require.NoError(t, m.Remove("/d/a"))
	_, err = m.Crash(nil).ReadFile("/d/a")
	require.NoError(t, err)
	require.NoError(t, m.SyncDir("/d"))
	_, err = m.Crash(nil).ReadFile("/d/a")
	require.Error(t, err)
}

func TestMemCapacityAndFaults(t *testing.T) {
	m := NewMem()
	require.NoError(t, m.MkdirAll("/d"))
	f, err := m.Create("/d/a")
	require.NoError(t, err)
	m.SetCapacity(4)
	n, err := f.Write([]byte("123456"))
	require.Equal(t, 4, n, "the bytes that fit are written")
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.ErrorIs(t, err, ErrNoSpace)

	boom := errors.New("boom")
	m.SetFault(func(op Op, name string) error {
		if op == OpSync {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, f.Datasync(), boom)
	m.SetFault(nil)
	require.NoError(t, f.Datasync())
	require.NoError(t, m.Truncate("/d/a", 2))
	data, err := m.ReadFile("/d/a")
	require.NoError(t, err)
	require.Equal(t, "12", string(data))
}

func TestOSDatasync(t *testing.T) {
	fs := OS()
	dir := t.TempDir()
	f, err := fs.Create(dir + "/x")
	require.NoError(t, err)
	_, err = f.Write([]byte("abc"))
	require.NoError(t, err)
	require.NoError(t, f.Datasync())
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	require.NoError(t, fs.SyncDir(dir))
	require.NoError(t, fs.Truncate(dir+"/x", 1))
	data, err := fs.ReadFile(dir + "/x")
	require.NoError(t, err)
	require.Equal(t, "a", string(data))
	names, err := fs.List(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"x"}, names)
	require.NoError(t, fs.Remove(dir+"/x"))
}
