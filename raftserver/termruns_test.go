package raftserver

import (
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/rago-raft/rago/raftserver/core"
)

// TestTermRunsAgreeWithTheLog drives termRuns through appends (some over
// the log's suffix, as a follower repairs its log), compactions, resets
// and lookups that go to storage, against a model log: whatever it answers
// from memory is the term the log holds.
func TestTermRunsAgreeWithTheLog(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var (
			runs  termRuns
			terms = map[uint64]uint64{} // the model: index -> term
			first = uint64(1)
			last  uint64
		)
		termAt := func(i uint64) uint64 { return terms[i] }
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0, 1, 2, 3: // append, possibly over the suffix
				from := rapid.Uint64Range(first, last+1).Draw(t, "from")
				n := rapid.IntRange(1, 5).Draw(t, "n")
				term := termAt(from - 1)
				if from-1 < first {
					term = 0
				}
				term += rapid.Uint64Range(0, 2).Draw(t, "termStep")
				var ents []core.Entry
				for i := range uint64(n) {
					if rapid.Bool().Draw(t, "newTerm") {
						term++
					}
					ents = append(ents, core.Entry{Index: from + i, Term: max(term, 1)})
				}
				for i := from; i <= last; i++ {
					delete(terms, i)
				}
				for _, e := range ents {
					terms[e.Index] = e.Term
				}
				last = from + uint64(n) - 1
				runs.appended(ents)
			case 4: // compaction
				if last >= first {
					through := rapid.Uint64Range(first, last).Draw(t, "through")
					for i := first; i <= through; i++ {
						delete(terms, i)
					}
					first = through + 1
					runs.compacted(first)
				}
			case 5: // a restart: nothing known
				runs = termRuns{}
			default: // a lookup
				if last < first {
					continue
				}
				i := rapid.Uint64Range(first, last).Draw(t, "index")
				if got, ok := runs.term(i); ok {
					require.Equal(t, termAt(i), got, "term of %d", i)
				} else {
					runs.learned(i, termAt(i), last)
				}
			}
			for i := first; i <= last; i++ {
				if got, ok := runs.term(i); ok {
					require.Equal(t, termAt(i), got, "term of %d in [%d, %d]", i, first, last)
				}
			}
		}
	})
}

// TestTermRunsLearnBackFromTheEnd: after a restart the runs fill from the
// last entry backwards, so a leader's lookups of recent entries stop
// reaching storage.
func TestTermRunsLearnBackFromTheEnd(t *testing.T) {
	var runs termRuns
	runs.learned(5, 2, 10) // not the last entry: nothing to anchor it
	_, ok := runs.term(5)
	require.False(t, ok)
	runs.learned(10, 3, 10)
	runs.learned(7, 3, 10) // same term as 10: so are 8 and 9
	for i := uint64(7); i <= 10; i++ {
		got, ok := runs.term(i)
		require.True(t, ok)
		require.Equal(t, uint64(3), got)
	}
	runs.learned(6, 2, 10) // right before the oldest run
	got, ok := runs.term(6)
	require.True(t, ok)
	require.Equal(t, uint64(2), got)
	runs.learned(3, 1, 10) // a gap: not known in between
	_, ok = runs.term(3)
	require.False(t, ok)
	runs.appended([]core.Entry{{Index: 8, Term: 4}})
	got, _ = runs.term(7)
	require.Equal(t, uint64(3), got)
	got, _ = runs.term(8)
	require.Equal(t, uint64(4), got)
}
