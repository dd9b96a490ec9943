package raftserver

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

func sampleSessions() *sessionTable {
	t := newSessionTable(1000, 10)
	t.record(5, 7, 1, 0, []byte("r1"), nil)
	t.record(6, 7, 2, 0, nil, errors.New("machine: boom"))
	t.record(9, 3, 1, 0, []byte("x"), nil)
	return t
}

func TestSnapshotMetaRoundTrip(t *testing.T) {
	desc := core.Snapshot{Index: 40, Term: 3, MachineVersion: 2,
		Members: core.Membership{Voters: []ServerID{{Name: "a", Node: "n1"}, {Name: "b", Node: "n2"}},
			NonVoters: []ServerID{{Name: "c", Node: "n3"}}}}
	sessions := sampleSessions()
	meta := encodeSnapMeta(desc, sessions)
	require.Equal(t, meta, encodeSnapMeta(desc, sampleSessions()), "every member writes the same bytes")

	got, gotSessions, err := decodeSnapMeta(snapshot.Info{Index: 40, Term: 3}, meta, 1000, 10)
	require.NoError(t, err)
	require.Equal(t, desc, got)
	reply, rerr, known := gotSessions.lookup(7, 1)
	require.True(t, known)
	require.NoError(t, rerr)
	require.Equal(t, "r1", string(reply))
	_, rerr, known = gotSessions.lookup(7, 2)
	require.True(t, known)
	require.ErrorIs(t, rerr, ErrMachine)
	require.Equal(t, encodeSnapMeta(desc, sessions), encodeSnapMeta(got, gotSessions))

	for _, bad := range [][]byte{nil, {2}, meta[:len(meta)-1], append(append([]byte(nil), meta...), 0)} {
		_, _, err := decodeSnapMeta(snapshot.Info{Index: 40, Term: 3}, bad, 1000, 10)
		require.ErrorIs(t, err, ErrStorage, "%x", bad)
	}
}

func FuzzDecodeSnapMeta(f *testing.F) {
	f.Add(encodeSnapMeta(core.Snapshot{Index: 1, Term: 1}, newSessionTable(10, 10)))
	f.Add(encodeSnapMeta(core.Snapshot{Index: 9, Term: 2, Members: core.Membership{Voters: []ServerID{{Name: "a", Node: "b"}}}}, sampleSessions()))
	f.Fuzz(func(t *testing.T, meta []byte) {
		info := snapshot.Info{Index: 9, Term: 2}
		desc, sessions, err := decodeSnapMeta(info, meta, 10, 10)
		if err != nil {
			require.ErrorIs(t, err, ErrStorage)
			return
		}
		again, againSessions, err := decodeSnapMeta(info, encodeSnapMeta(desc, sessions), 10, 10)
		require.NoError(t, err)
		require.Equal(t, desc, again)
		require.Equal(t, encodeSnapMeta(desc, sessions), encodeSnapMeta(again, againSessions))
	})
}

func TestSessionCommandsMayArriveOutOfOrder(t *testing.T) {
	tbl := newSessionTable(1000, 10)
	// Commands 1 and 2 of one session were sent at once; 2 is applied first.
	tbl.record(10, 7, 2, 0, []byte("two"), nil)
	_, _, known := tbl.lookup(7, 1)
	require.False(t, known, "command 1 was not applied yet: it must be, not refused as stale")
	tbl.record(11, 7, 1, 0, []byte("one"), nil)
	reply, _, known := tbl.lookup(7, 1)
	require.True(t, known)
	require.Equal(t, "one", string(reply))
	// Once the client confirmed both, a replay of either is stale.
	tbl.record(12, 7, 3, 2, []byte("three"), nil)
	_, err, known := tbl.lookup(7, 1)
	require.True(t, known)
	require.ErrorIs(t, err, ErrSessionStale)
}
