package core

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func ents(first, term uint64, n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{Index: first + uint64(i), Term: term, Type: EntryNormal, Data: []byte{byte(i)}}
	}
	return out
}

func TestRaftLogStableToIgnoresStaleReports(t *testing.T) {
	store := newMemLog(ents(1, 1, 3)...)
	l, err := newRaftLog(store, Snapshot{})
	require.NoError(t, err)
	require.EqualValues(t, 3, l.stable)

	require.NoError(t, l.append(ents(4, 2, 4))) // 4..7, term 2, in flight
	require.True(t, l.inFlight())
	require.False(t, l.stableTo(2, 3), "already stable")
	require.False(t, l.stableTo(1, 5), "wrong term")
	require.False(t, l.stableTo(2, 9), "beyond the log")
	require.True(t, l.stableTo(2, 5))
	require.EqualValues(t, 5, l.stable)
	require.Len(t, l.unstable, 2)
	store.write(ents(4, 2, 4))
	require.True(t, l.stableTo(2, 7))
	require.False(t, l.inFlight())

	// Overwrite from 5 with term 3: entries 5..7 are replaced.
	require.NoError(t, l.append(ents(5, 3, 1)))
	require.EqualValues(t, 4, l.stable)
	require.False(t, l.stableTo(2, 7), "the write of 7 was overwritten")
	require.False(t, l.stableTo(2, 5), "5 now has term 3")
	store.write(ents(5, 3, 1))
	require.True(t, l.stableTo(3, 5))
	require.EqualValues(t, 5, l.lastIndex())
	require.EqualValues(t, 3, l.lastTerm())
}

func TestRaftLogSliceSpansStorageAndMemory(t *testing.T) {
	store := newMemLog(ents(1, 1, 5)...)
	l, err := newRaftLog(store, Snapshot{})
	require.NoError(t, err)
	require.NoError(t, l.append(ents(6, 1, 5)))
	got, err := l.slice(3, 9, 1<<20)
	require.NoError(t, err)
	require.Len(t, got, 6)
	for i, e := range got {
		require.EqualValues(t, 3+i, e.Index)
	}
	// A tiny budget still returns one entry.
	got, err = l.slice(3, 9, 1)
	require.NoError(t, err)
	require.Len(t, got, 1)
	got, err = l.slice(7, 9, 1)
	require.NoError(t, err)
	require.Len(t, got, 1)
	// Entirely in storage.
	got, err = l.slice(2, 4, 1<<20)
	require.NoError(t, err)
	require.Len(t, got, 2)
	// A budget that ends inside the unstable entries.
	budget := l.unstable[0].size() + l.unstable[1].size() + l.unstable[2].size()
	got, err = l.slice(6, 11, budget)
	require.NoError(t, err)
	require.Len(t, got, 3)
	// The result is a copy: the log may overwrite its unstable entries
	// while a message still holds what it was sent.
	l.unstable[0].Term = 99
	require.EqualValues(t, 1, got[0].Term)
}

func TestRaftLogConflictHintSkipsWholeTerms(t *testing.T) {
	// Terms: 1 1 1 2 2 2 2 4 4 4
	log := append(append(ents(1, 1, 3), ents(4, 2, 4)...), ents(8, 4, 3)...)
	l, err := newRaftLog(newMemLog(log...), Snapshot{})
	require.NoError(t, err)
	i, term, err := l.conflictHint(10, 3)
	require.NoError(t, err)
	require.Equal(t, [2]uint64{7, 2}, [2]uint64{i, term})
	i, term, err = l.conflictHint(10, 1)
	require.NoError(t, err)
	require.Equal(t, [2]uint64{3, 1}, [2]uint64{i, term})
	i, _, err = l.conflictHint(50, 9)
	require.NoError(t, err)
	require.EqualValues(t, 10, i)
	i, _, err = l.conflictHint(10, 0)
	require.NoError(t, err)
	require.EqualValues(t, 0, i)
}
