package meta

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

func open(t *testing.T, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open("/meta", Options{FS: fs})
	require.NoError(t, err)
	return s
}

func TestPutIsDurableBeforeReturn(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := open(t, fs)
	require.NoError(t, s.Put("u1", 7, ServerID{Name: "s1", Node: "n1:1"}))
	require.NoError(t, s.SetLastApplied("u1", 40))
	require.NoError(t, s.Put("u2", 3, ServerID{}))
	// Power cut: only synced data survives. Put synced; the unsynced
	// last-applied update before it was carried along by that sync.
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s2 := open(t, crashed)
	defer s2.Close()
	term, voted, applied, err := s2.Get("u1")
	require.NoError(t, err)
	require.Equal(t, uint64(7), term)
	require.Equal(t, ServerID{Name: "s1", Node: "n1:1"}, voted)
	require.Equal(t, uint64(40), applied)
	term, voted, _, err = s2.Get("u2")
	require.NoError(t, err)
	require.Equal(t, uint64(3), term)
	require.Equal(t, ServerID{}, voted)
	require.NoError(t, s.Close())
}

func TestLastAppliedMayLagAfterCrashButNeverLeads(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := open(t, fs)
	require.NoError(t, s.Put("u", 1, ServerID{}))
	require.NoError(t, s.SetLastApplied("u", 10))
	require.NoError(t, s.Put("u", 1, ServerID{})) // sync point
	require.NoError(t, s.SetLastApplied("u", 20))
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s2 := open(t, crashed)
	defer s2.Close()
	_, _, applied, err := s2.Get("u")
	require.NoError(t, err)
	require.Contains(t, []uint64{10, 20}, applied)
	require.NoError(t, s.Close())
}

func TestDirectory(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, fs)
	a := Server{UID: "uidA", ServerName: "kv1", ClusterName: "kv", MachineConfig: []byte("cfg"),
		Members: []ServerID{{"kv1", "n1"}, {"kv2", "n2"}}, InitialMembers: []ServerID{{"kv1", "n1"}}}
	b := Server{UID: "uidB", ServerName: "q1", ClusterName: "queue"}
	require.NoError(t, s.PutServer(b))
	require.NoError(t, s.PutServer(a))
	require.NoError(t, s.Put("uidA", 2, ServerID{})) // other kinds do not leak into the list
	list, err := s.Servers()
	require.NoError(t, err)
	require.Equal(t, []Server{a, b}, list)
	got, ok, err := s.Server("uidB")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, b, got)
	require.NoError(t, s.DeleteServer("uidA"))
	require.NoError(t, s.Delete("uidA"))
	require.NoError(t, s.Close())

	s2 := open(t, fs)
	defer s2.Close()
	list, err = s2.Servers()
	require.NoError(t, err)
	require.Equal(t, []Server{b}, list)
	term, _, _, err := s2.Get("uidA")
	require.NoError(t, err)
	require.Zero(t, term)
	require.ErrorIs(t, s2.Put("", 1, ServerID{}), ErrInvalid)
}

// TestSetServerMembersWritesOnlyChanges checks that a member list equal to
// the recorded one is not written again (a restarted node re-applies every
// server's configuration entries), that a changed one is written durably
// with the rest of the record kept, and that a deleted server's record is
// not brought back.
func TestSetServerMembersWritesOnlyChanges(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, fs)
	rec := Server{UID: "uidA", ServerName: "kv1", ClusterName: "kv", MachineConfig: []byte("cfg"),
		Members: []ServerID{{"kv1", "n1"}, {"kv2", "n2"}}, InitialMembers: []ServerID{{"kv1", "n1"}}}
	require.NoError(t, s.PutServer(rec))

	written, err := s.SetServerMembers("uidA", []ServerID{{"kv1", "n1"}, {"kv2", "n2"}})
	require.NoError(t, err)
	require.False(t, written, "an unchanged member list was written")

	grown := []ServerID{{"kv1", "n1"}, {"kv2", "n2"}, {"kv3", "n3"}}
	written, err = s.SetServerMembers("uidA", grown)
	require.NoError(t, err)
	require.True(t, written)

	written, err = s.SetServerMembers("gone", grown)
	require.NoError(t, err)
	require.False(t, written)
	require.NoError(t, s.Close())

	s2 := open(t, fs)
	defer s2.Close()
	list, err := s2.Servers()
	require.NoError(t, err)
	want := rec
	want.Members = grown
	require.Equal(t, []Server{want}, list)
	_, err = s2.SetServerMembers("", grown)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestDirectoryReadsVersionOneRecords(t *testing.T) {
	// A version 1 record: name, cluster, config, members; no initial
	// members, which read as the members.
	v := []byte{1, 2, 'k', '1', 2, 'k', 'v', 1, 'c', 1, 2, 'k', '1', 2, 'n', '1'}
	srv, err := decodeServer("u", v)
	require.NoError(t, err)
	want := []ServerID{{"k1", "n1"}}
	require.Equal(t, Server{UID: "u", ServerName: "k1", ClusterName: "kv", MachineConfig: []byte("c"),
		Members: want, InitialMembers: want}, srv)
	_, err = decodeServer("u", append([]byte{3}, v[1:]...))
	require.ErrorIs(t, err, ErrCorrupt)
}

func FuzzDecodeServer(f *testing.F) {
	f.Add(encodeServer(Server{UID: "u", ServerName: "a", ClusterName: "b", MachineConfig: []byte{1}, Members: []ServerID{{"x", "y"}}}))
	f.Add([]byte{1, 2, 'k', '1', 2, 'k', 'v', 1, 'c', 1, 2, 'k', '1', 2, 'n', '1'})
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, v []byte) {
		srv, err := decodeServer("u", v)
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		// Varints may be non-minimal in v, so compare meaning, not bytes.
		again, err := decodeServer("u", encodeServer(srv))
		require.NoError(t, err)
		require.Equal(t, srv, again)
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(5, ServerID{"a", "b"}))
	f.Fuzz(func(t *testing.T, v []byte) {
		term, voted, err := decodeState(v)
		if err != nil {
			return
		}
		t2, v2, err := decodeState(encodeState(term, voted))
		require.NoError(t, err)
		require.Equal(t, term, t2)
		require.Equal(t, voted, v2)
	})
}

func TestLostLogIsDurableKeepsTheHighestAndGoesWithDelete(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := open(t, fs)
	require.NoError(t, s.SetLost("u", 40, 3))
	require.NoError(t, s.SetLost("u", 30, 2), "a lower index is kept out")
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s2 := open(t, crashed)
	i, term, err := s2.Lost("u")
	require.NoError(t, err)
	require.Equal(t, [2]uint64{40, 3}, [2]uint64{i, term}, "synced before SetLost returns")
	require.NoError(t, s2.Close())

	require.NoError(t, s.SetLost("u", 50, 4))
	i, term, err = s.Lost("u")
	require.NoError(t, err)
	require.Equal(t, [2]uint64{50, 4}, [2]uint64{i, term})
	require.NoError(t, s.ClearLost("u"))
	i, _, err = s.Lost("u")
	require.NoError(t, err)
	require.Zero(t, i)
	require.NoError(t, s.SetLost("u", 7, 1))
	require.NoError(t, s.Delete("u"))
	i, _, err = s.Lost("u")
	require.NoError(t, err)
	require.Zero(t, i)
	_, _, err = s.Lost("")
	require.ErrorIs(t, err, ErrInvalid)
	require.NoError(t, s.Close())
}
