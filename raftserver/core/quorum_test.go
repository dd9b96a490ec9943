package core

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// naiveCommitted is the definition: the highest index held by a majority.
func naiveCommitted(matches []uint64) uint64 {
	best := uint64(0)
	for _, candidate := range matches {
		n := 0
		for _, m := range matches {
			if m >= candidate {
				n++
			}
		}
		if n >= len(matches)/2+1 && candidate > best {
			best = candidate
		}
	}
	return best
}

func TestCommittedIndexMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		n := rng.IntN(8)
		matches := make([]uint64, n)
		for j := range matches {
			matches[j] = rng.Uint64N(6)
		}
		want := naiveCommitted(matches)
		require.Equal(t, want, committedIndex(append([]uint64(nil), matches...)), "%v", matches)
	}
}

func TestTallyVotes(t *testing.T) {
	a, b, c := ServerID{"a", "1"}, ServerID{"b", "2"}, ServerID{"c", "3"}
	voters := []ServerID{a, b, c}
	require.Equal(t, votePending, tallyVotes(voters, map[ServerID]bool{a: true}))
	require.Equal(t, voteWon, tallyVotes(voters, map[ServerID]bool{a: true, c: true}))
	require.Equal(t, voteLost, tallyVotes(voters, map[ServerID]bool{a: true, b: false, c: false}))
	// Votes from non-voters do not count.
	require.Equal(t, votePending, tallyVotes(voters, map[ServerID]bool{a: true, {"x", "9"}: true}))
	require.Equal(t, voteWon, tallyVotes([]ServerID{a}, map[ServerID]bool{a: true}))
}
