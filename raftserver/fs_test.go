package raftserver

import (
	"io/fs"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// TestMakeDataDirsSurvivesACrash: the directories a system creates are in
// a crash clone taken right after, even those an earlier start created
// without making them durable.
func TestMakeDataDirsSurvivesACrash(t *testing.T) {
	m := vfs.NewCrashableMem()
	require.NoError(t, makeDataDirs(m, "/a/b/n1", "wal", "meta"))
	c := m.CrashClone(vfs.CrashCloneCfg{})
	for _, d := range []string{"/a/b/n1/wal", "/a/b/n1/meta"} {
		st, err := c.Stat(d)
		require.NoError(t, err)
		require.True(t, st.IsDir())
	}

	// Without the syncs new directories are lost.
	require.NoError(t, m.MkdirAll("/a/b/n2/wal", 0o755))
	_, err := m.CrashClone(vfs.CrashCloneCfg{}).Stat("/a/b/n2")
	require.ErrorIs(t, err, fs.ErrNotExist)
	// A start over such a data directory makes it durable.
	require.NoError(t, makeDataDirs(m, "/a/b/n2", "wal", "meta"))
	c = m.CrashClone(vfs.CrashCloneCfg{})
	for _, d := range []string{"/a/b/n2/wal", "/a/b/n2/meta"} {
		_, err = c.Stat(d)
		require.NoError(t, err)
	}
}
