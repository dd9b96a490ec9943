package core

import "slices"

// Quorum maths as pure functions, kept apart from the role logic so it can
// be tested against a naive version.

// quorumSize is the number of voters that make a majority of n.
func quorumSize(n int) int { return n/2 + 1 }

// committedIndex returns the highest index that a majority of the voters
// have at or above it, given each voter's match index. It sorts matches in
// place. With no voters it returns 0.
func committedIndex(matches []uint64) uint64 {
	if len(matches) == 0 {
		return 0
	}
	slices.Sort(matches)
	// Ascending order: the majority's lowest member sits quorumSize from the
	// top.
	return matches[len(matches)-quorumSize(len(matches))]
}

// voteResult tallies granted and denied votes among voters.
type voteResult uint8

const (
	votePending voteResult = iota
	voteWon
	voteLost
)

func countGranted(votes map[ServerID]bool) int {
	n := 0
	for _, v := range votes {
		if v {
			n++
		}
	}
	return n
}

func tallyVotes(voters []ServerID, votes map[ServerID]bool) voteResult {
	granted, denied := 0, 0
	for _, id := range voters {
		v, ok := votes[id]
		switch {
		case !ok:
		case v:
			granted++
		default:
			denied++
		}
	}
	q := quorumSize(len(voters))
	switch {
	case granted >= q:
		return voteWon
	case denied > len(voters)-q:
		return voteLost
	default:
		return votePending
	}
}
