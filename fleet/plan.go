package fleet

import (
	"slices"

	"github.com/rago-raft/rago/raftserver"
)

// ChangeKind is one step of reconciliation.
type ChangeKind string

// The steps a reconciler takes, one per group at a time.
const (
	// ChangeFound creates an unborn group's first member on its founder.
	ChangeFound ChangeKind = "found"
	// ChangeAdd starts a member on a node placement wants and adds it as a
	// non-voter.
	ChangeAdd ChangeKind = "add"
	// ChangePromote makes a caught-up non-voter a voter.
	ChangePromote ChangeKind = "promote"
	// ChangeRemove removes a member placement no longer wants.
	ChangeRemove ChangeKind = "remove"
	// ChangeTransfer hands leadership to the desired leader.
	ChangeTransfer ChangeKind = "transfer"
	// ChangeRejoin re-admits a member that lost its data (Rejoin).
	ChangeRejoin ChangeKind = "rejoin"
	// ChangeForget deletes a local replica that belongs nowhere any more:
	// of a removed group, of a group founded elsewhere, or removed from
	// its group and off placement.
	ChangeForget ChangeKind = "forget"
	// ChangeRecord writes a group's current voters into the books, as a
	// routing hint.
	ChangeRecord ChangeKind = "record"
)

// Change is one step on one group.
type Change struct {
	Group string
	Kind  ChangeKind
	// Node is the member concerned (the new member, the one promoted,
	// removed, rejoined or forgotten, or the leader-to-be).
	Node string
	// Leader is the group's leader when the step was planned: the step
	// goes through it.
	Leader raftserver.ServerID
}

// plan returns the next step that brings a born group, whose leader
// reported L, to placement place (place[0] is the desired leader, the node
// that plans). ok is false when nothing is to be done now: the group is
// where it belongs, or it waits for a non-voter to catch up. slack is how
// far behind the leader's commit index a non-voter may be and still count
// as caught up.
//
// The order is what makes it safe: members are added before any is
// removed, a member is removed only once every member placement wants is
// a voter (so each replacement caught up first), and one change per group
// is in flight at a time (the caller sees to that), so a planned change
// never leaves a group without a quorum of live voters it had before.
//
// lost are the wanted members whose replica lost its data (it is missing
// from its node, or is another incarnation than the one the configuration
// binds): they are re-admitted first, as strangers are.
func plan(group string, place []string, L *raftserver.ServerStatus, lost []string, slack uint64) (Change, bool) {
	c := Change{Group: group, Leader: L.ID}
	nodes := func(ids []raftserver.ServerID) []string {
		out := make([]string, 0, len(ids))
		for _, id := range ids {
			out = append(out, id.Node)
		}
		return out
	}
	voters, nonVoters := nodes(L.Voters), nodes(L.NonVoters)
	wanted := func(n string) bool { return slices.Contains(place, n) }

	// A member that lost its data is a stranger to the group: it comes
	// back only through Rejoin.
	for _, s := range L.Strangers {
		if wanted(s.Node) {
			c.Kind, c.Node = ChangeRejoin, s.Node
			return c, true
		}
	}
	for _, n := range lost {
		if wanted(n) && n != L.ID.Node {
			c.Kind, c.Node = ChangeRejoin, n
			return c, true
		}
	}
	for _, p := range place {
		if !slices.Contains(voters, p) && !slices.Contains(nonVoters, p) {
			c.Kind, c.Node = ChangeAdd, p
			return c, true
		}
	}
	waiting := false
	for _, n := range nonVoters {
		switch {
		case !wanted(n):
			c.Kind, c.Node = ChangeRemove, n
			return c, true
		case caughtUp(L, n, slack):
			c.Kind, c.Node = ChangePromote, n
			return c, true
		default:
			waiting = true
		}
	}
	if waiting {
		return c, false // nothing is removed before its replacement caught up
	}
	for _, v := range voters {
		if wanted(v) {
			continue
		}
		if v == L.ID.Node {
			// The leader is to go: it hands over to the desired leader
			// (once that keeps up), and the next round removes it.
			if !keepsUp(L, place[0], slack) {
				return c, false
			}
			c.Kind, c.Node = ChangeTransfer, place[0]
			return c, true
		}
		c.Kind, c.Node = ChangeRemove, v
		return c, true
	}
	if L.ID.Node != place[0] && keepsUp(L, place[0], slack) {
		c.Kind, c.Node = ChangeTransfer, place[0]
		return c, true
	}
	return c, false
}

// keepsUp reports whether the leader replicates to node in step: a
// transfer to a member that is behind, or that the leader cannot reach
// (its replica is gone), would fail, and while it is tried the leader
// turns commands away.
func keepsUp(L *raftserver.ServerStatus, node string, slack uint64) bool {
	for _, p := range L.Progress {
		if p.ID.Node == node {
			return p.State == "replicate" && p.Match+slack >= L.Commit
		}
	}
	return false
}

// caughtUp reports whether the leader's progress shows member node within
// slack entries of its commit index.
func caughtUp(L *raftserver.ServerStatus, node string, slack uint64) bool {
	for _, p := range L.Progress {
		if p.ID.Node == node {
			return p.Match+slack >= L.Commit
		}
	}
	return false
}

// converged reports whether the group's members are exactly placement,
// all voters, led by the desired leader.
func converged(place []string, L *raftserver.ServerStatus) bool {
	if L == nil || len(place) == 0 || len(L.NonVoters) > 0 || len(L.Voters) != len(place) || L.ID.Node != place[0] {
		return false
	}
	for _, v := range L.Voters {
		if !slices.Contains(place, v.Node) {
			return false
		}
	}
	return true
}
