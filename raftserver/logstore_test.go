package raftserver

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/wal"
)

// TestFramedEntriesGoSharedToTheWAL checks that the entries made framed (a
// follower's decoded entries, a leader's user commands) reach the WAL as
// shared payloads, the very bytes and not a copy, and that any other entry
// goes as a prefix and its data, so that both read back the same.
func TestFramedEntriesGoSharedToTheWAL(t *testing.T) {
	ae := &core.AppendEntries{Term: 2, PrevIndex: 4, PrevTerm: 1, Entries: []core.Entry{
		{Index: 5, Term: 2, Type: core.EntryNormal, Data: []byte("\x00command")},
		{Index: 6, Term: 2, Type: core.EntryNoop},
	}}
	m, err := core.DecodeMessage(ae.AppendBinary(nil))
	require.NoError(t, err)
	decoded := m.(*core.AppendEntries).Entries

	cmd := frameUserCommand([]byte("put x"))
	require.Equal(t, "\x01\x00put x", string(cmd), "EntryNormal, cmdUser, data")
	ownCommand := core.Entry{Index: 7, Term: 2, Type: core.EntryNormal, Data: cmd[1:], Framed: cmd}

	plain := core.Entry{Index: 8, Term: 2, Type: core.EntryNormal, Data: []byte("\x00plain")}
	copied := plain
	copied.Framed = append([]byte{byte(core.EntryNormal)}, plain.Data...) // not Data's own bytes

	ents := append(decoded, ownCommand, plain, copied)
	ws := encodeEntries(ents)
	for i, w := range ws {
		framed := i < 3
		require.Equal(t, framed, w.Shared, "entry %d", ents[i].Index)
		require.Equal(t, !framed, w.Prefixed, "entry %d", ents[i].Index)
		if framed {
			require.Same(t, &ents[i].Framed[0], &w.Payload[0], "entry %d: the frame itself, not a copy", ents[i].Index)
		}
		stored := w.Payload
		if w.Prefixed {
			stored = append([]byte{w.Prefix}, w.Payload...)
		}
		back, err := decodeEntry(wal.Entry{Index: w.Index, Term: w.Term, Payload: stored})
		require.NoError(t, err)
		require.Equal(t, ents[i].Type, back.Type, "entry %d", ents[i].Index)
		require.Equal(t, string(ents[i].Data), string(back.Data), "entry %d", ents[i].Index)
	}
}
