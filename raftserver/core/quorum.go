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

// voteResult is the state of an election's tally.
type voteResult uint8

const (
	votePending voteResult = iota
	voteWon
	voteLost
)

// ballot is one voter's answer to a candidacy.
type ballot uint8

const (
	ballotDenied ballot = iota
	// ballotGranted vouches for the candidate's log: the voter holds no
	// committed entry the candidate lacks.
	ballotGranted
	// ballotGrantedLost is a grant from a voter that lost entries it may
	// have acknowledged (VoteReply.Lost): it cannot vouch for them.
	ballotGrantedLost
)

func ballotOf(granted, lost bool) ballot {
	switch {
	case !granted:
		return ballotDenied
	case lost:
		return ballotGrantedLost
	default:
		return ballotGranted
	}
}

func countGranted(votes map[ServerID]ballot) int {
	n := 0
	for _, v := range votes {
		if v != ballotDenied {
			n++
		}
	}
	return n
}

// tallyVotes decides an election among voters. A candidate wins with a
// quorum of grants of which the vouching ones (the candidate's own
// included) meet every quorum: an entry committed by any quorum is then
// held by one of them, and a member holding an entry grants only logs that
// have it, so the candidate has every committed entry. The voters that lost
// entries are the only ones whose grant could miss such an entry; in a
// cluster of an even size one of them can complete the quorum of a
// candidate that its other voters vouch for, which keeps a cluster of two
// live while one member recovers. In an odd-sized cluster the vouching
// voters alone must make a quorum.
func tallyVotes(voters []ServerID, votes map[ServerID]ballot) voteResult {
	granted, vouched, unvouched, denied := 0, 0, 0, 0
	for _, id := range voters {
		v, ok := votes[id]
		switch {
		case !ok:
		case v == ballotGranted:
			granted++
			vouched++
		case v == ballotGrantedLost:
			granted++
			unvouched++
		default:
			denied++
		}
	}
	n, q := len(voters), quorumSize(len(voters))
	// vouched meets every quorum when the voters outside it make none.
	switch {
	case granted >= q && n-vouched < q:
		return voteWon
	case denied > n-q || denied+unvouched >= q:
		return voteLost
	default:
		return votePending
	}
}
