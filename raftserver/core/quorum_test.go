package core

import (
	"fmt"
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
	a, b, c, d := ServerID{"a", "1"}, ServerID{"b", "2"}, ServerID{"c", "3"}, ServerID{"d", "4"}
	voters := []ServerID{a, b, c}
	g, l, n := ballotGranted, ballotGrantedLost, ballotDenied
	require.Equal(t, votePending, tallyVotes(voters, map[ServerID]ballot{a: g}))
	require.Equal(t, voteWon, tallyVotes(voters, map[ServerID]ballot{a: g, c: g}))
	require.Equal(t, voteLost, tallyVotes(voters, map[ServerID]ballot{a: g, b: n, c: n}))
	// Votes from non-voters do not count.
	require.Equal(t, votePending, tallyVotes(voters, map[ServerID]ballot{a: g, {"x", "9"}: g}))
	require.Equal(t, voteWon, tallyVotes([]ServerID{a}, map[ServerID]ballot{a: g}))
	// A grant that cannot vouch never helps in an odd-sized cluster...
	require.Equal(t, votePending, tallyVotes(voters, map[ServerID]ballot{a: g, b: l}))
	require.Equal(t, voteLost, tallyVotes(voters, map[ServerID]ballot{a: g, b: l, c: n}))
	// ...and completes a quorum of an even-sized one where the vouching
	// grants meet every quorum.
	require.Equal(t, voteWon, tallyVotes([]ServerID{a, b}, map[ServerID]ballot{a: g, b: l}))
	require.Equal(t, voteWon, tallyVotes([]ServerID{a, b, c, d}, map[ServerID]ballot{a: g, b: g, c: l}))
	require.Equal(t, votePending, tallyVotes([]ServerID{a, b, c, d}, map[ServerID]ballot{a: g, b: l, c: l}))
	require.Equal(t, voteLost, tallyVotes([]ServerID{a, b, c, d}, map[ServerID]ballot{a: g, b: l, c: l, d: n}))
}

// TestTallyVotesAgainstQuorumIntersection checks tallyVotes on every
// combination of answers for up to six voters against its definition: a
// win needs a quorum of grants whose vouching part meets every quorum (so
// it holds every committed entry), and a loss means no answers still
// missing could make a win.
func TestTallyVotesAgainstQuorumIntersection(t *testing.T) {
	const missing = 3
	wins := func(n int, answers []int) bool {
		granted, vouched := 0, 0
		for _, a := range answers {
			if a == int(ballotGranted) || a == int(ballotGrantedLost) {
				granted++
			}
			if a == int(ballotGranted) {
				vouched++
			}
		}
		if granted < quorumSize(n) {
			return false
		}
		for set := 0; set < 1<<n; set++ { // every quorum meets a vouching grant
			size, meets := 0, false
			for i := range n {
				if set&(1<<i) != 0 {
					size++
					meets = meets || answers[i] == int(ballotGranted)
				}
			}
			if size >= quorumSize(n) && !meets {
				return false
			}
		}
		return true
	}
	var canWin func(n int, answers []int, i int) bool
	canWin = func(n int, answers []int, i int) bool {
		if i == n {
			return wins(n, answers)
		}
		if answers[i] != missing {
			return canWin(n, answers, i+1)
		}
		for a := range missing {
			answers[i] = a
			if canWin(n, answers, i+1) {
				answers[i] = missing
				return true
			}
		}
		answers[i] = missing
		return false
	}
	for n := 1; n <= 6; n++ {
		voters := make([]ServerID, n)
		for i := range voters {
			voters[i] = ServerID{Name: fmt.Sprint("s", i), Node: "n"}
		}
		answers := make([]int, n)
		for code := 0; code < 1<<(2*n); code++ {
			votes := map[ServerID]ballot{}
			for i := range n {
				answers[i] = (code >> (2 * i)) & 3
				if answers[i] != missing {
					votes[voters[i]] = ballot(answers[i])
				}
			}
			want := votePending
			switch {
			case wins(n, answers):
				want = voteWon
			case !canWin(n, append([]int(nil), answers...), 0):
				want = voteLost
			}
			require.Equal(t, want, tallyVotes(voters, votes), "n=%d answers=%v", n, answers)
		}
	}
}
