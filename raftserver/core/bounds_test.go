package core

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// leaderOf returns the member every live member follows, or the zero ID if
// they do not agree on one.
func (c *testCluster) leaderOf() ServerID {
	var lead ServerID
	for _, sid := range c.ids {
		nd := c.nodes[sid]
		if nd.down {
			continue
		}
		l := nd.r.Leader()
		if l.IsZero() || (!lead.IsZero() && l != lead) {
			return ServerID{}
		}
		lead = l
	}
	if lead.IsZero() || c.nodes[lead].r.Role() != RoleLeader {
		return ServerID{}
	}
	return lead
}

// recoverLeader lets every member's election timer fire in turn, settling
// after each, until the cluster agrees on a leader; it returns the zero ID
// if it never does.
func (c *testCluster) recoverLeader() ServerID {
	for round := 0; round < 10; round++ {
		if l := c.leaderOf(); !l.IsZero() {
			return l
		}
		for _, sid := range c.ids {
			if c.nodes[sid].timerMs != 0 {
				c.step(sid, ElectionTimeout{})
				c.settle()
			}
		}
		for _, sid := range c.ids {
			c.step(sid, LeaderDown{Leader: c.nodes[sid].r.Leader()})
		}
		c.settle()
	}
	return c.leaderOf()
}

// forgedAtTopTerm are messages a peer could forge with the largest term
// the wire can carry. Before terms were bounded, the first three bricked a
// cluster: the receiver took the term and persisted it, its pre-vote term
// (term+1) wrapped to 0, and no member could ever win an election again.
func forgedAtTopTerm() []Message {
	top := uint64(math.MaxUint64)
	return []Message{
		&Heartbeat{Term: top, Seq: 1, Commit: 1},
		&AppendEntries{Term: top, PrevIndex: 1, PrevTerm: 1, Commit: 1},
		&VoteRequest{Term: top, LastIndex: 1 << 40, LastTerm: top, Transfer: true},
		&PreVoteRequest{Term: top, LastIndex: 1 << 40, LastTerm: top},
		&TimeoutNow{Term: top},
		&InstallSnapshot{Term: top, Snapshot: Snapshot{Index: top, Term: top}},
		&NotLeader{Term: top},
		&AppendReply{Term: top, Success: true, LastIndex: top, LastTerm: top, NextIndex: top},
		&HeartbeatReply{Term: top, Seq: 1, Commit: top},
	}
}

// TestForgedTopTermDoesNotBrickTheCluster delivers a forged message at term
// 2^64-1 to a follower and to the leader of a running cluster, as from
// the leader and from a follower: the cluster keeps its leader, commits
// commands, persists no term above MaxTerm and elects a leader again after
// every member restarts.
func TestForgedTopTermDoesNotBrickTheCluster(t *testing.T) {
	for _, forged := range forgedAtTopTerm() {
		t.Run(fmt.Sprintf("%T", forged), func(t *testing.T) {
			c := newTestCluster(t, 3)
			c.elect(id(1))
			c.propose(id(1), "before")
			c.settle()

			c.step(id(2), Receive{From: id(1), Msg: forged})
			c.step(id(1), Receive{From: id(3), Msg: forged})
			c.settle()
			c.tick(id(1), 5)

			lead := c.recoverLeader()
			require.False(t, lead.IsZero(), "no leader after the forged message")
			tok := c.propose(lead, "after")
			c.settle()
			c.tick(lead, 5)
			require.True(t, c.node(lead).hasToken(tok), "a command did not commit after the forged message")
			for _, sid := range c.ids {
				require.LessOrEqual(t, c.node(sid).hard.Term, uint64(MaxTerm), "%s persisted a term above MaxTerm", sid)
			}

			for _, sid := range c.ids {
				c.restart(sid)
			}
			c.settle()
			lead = c.recoverLeader()
			require.False(t, lead.IsZero(), "no leader after every member restarted")
			tok = c.propose(lead, "restarted")
			c.settle()
			require.True(t, c.node(lead).hasToken(tok), "a command did not commit after the restart")
		})
	}
}

// TestNoCampaignPastMaxTerm: a member at MaxTerm has no next term, so it
// does not stand (a pre-vote at MaxTerm+1 would be refused everywhere, and
// the term must not grow past the bound), while it still follows a leader
// of MaxTerm.
func TestNoCampaignPastMaxTerm(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.settle()
	c.step(id(2), Receive{From: id(1), Msg: &Heartbeat{Term: MaxTerm, Seq: 1}})
	c.settle()
	nd := c.node(id(2))
	require.EqualValues(t, MaxTerm, nd.r.Status().Term, "a message at MaxTerm is taken")
	require.EqualValues(t, MaxTerm, nd.hard.Term)
	c.step(id(2), LeaderDown{Leader: id(1)})
	require.Zero(t, nd.timerMs, "a member at MaxTerm armed its election timer to campaign")
	acts := c.step(id(2), ElectionTimeout{})
	require.Empty(t, sends(acts), "a member at MaxTerm campaigned")
	require.EqualValues(t, MaxTerm, nd.r.Status().Term)
	c.step(id(2), Receive{From: id(1), Msg: &TimeoutNow{Term: MaxTerm}})
	require.EqualValues(t, MaxTerm, nd.r.Status().Term, "a transfer raised the term past MaxTerm")
	require.Equal(t, RoleFollower, nd.r.Role())
}

// TestNewRefusesDurableStateOutOfRange: a term or index beyond the bounds
// on disk (written by a build without them) is refused at start, not
// adopted.
func TestNewRefusesDurableStateOutOfRange(t *testing.T) {
	m := Membership{Voters: []ServerID{id(1)}}
	_, err := New(testConfig(id(1), m, 1), HardState{Term: MaxTerm + 1}, newMemLog())
	require.ErrorIs(t, err, ErrInvalidState)
	require.ErrorIs(t, err, ErrOutOfRange)
	log := newMemLog()
	log.reset(MaxIndex+1, 1)
	_, err = New(testConfig(id(1), m, 1), HardState{Term: 1}, log)
	require.ErrorIs(t, err, ErrOutOfRange)
}

// TestCommandsPastMaxIndexAreRefused: a leader whose log reached MaxIndex
// refuses commands instead of computing an index that wraps.
func TestCommandsPastMaxIndexAreRefused(t *testing.T) {
	c := &testCluster{t: t, nodes: map[ServerID]*testNode{}, cut: map[[2]ServerID]bool{}}
	c.members.Voters = []ServerID{id(1)}
	cfg := testConfig(id(1), c.members, 1)
	cfg.Snapshot = Snapshot{Index: MaxIndex - 1, Term: 1, Members: c.members}
	log := newMemLog()
	log.reset(MaxIndex-1, 1)
	nd := c.start(cfg, HardState{Term: 1}, log)
	c.settle()
	require.Equal(t, RoleLeader, nd.r.Role())
	require.EqualValues(t, MaxIndex, nd.r.Commit(), "the noop takes the last index")
	c.propose(id(1), "one too many")
	c.settle()
	require.ErrorIs(t, nd.lastReply().Err, ErrOutOfRange)
	require.EqualValues(t, MaxIndex, nd.r.Status().LastIndex)
}

// TestAFullLogAppendsNothingPastMaxIndex: a leader whose log reached
// MaxIndex refuses a membership change too, and a member whose log is
// full does not stand (its noop would not fit).
func TestAFullLogAppendsNothingPastMaxIndex(t *testing.T) {
	c := &testCluster{t: t, nodes: map[ServerID]*testNode{}, cut: map[[2]ServerID]bool{}}
	c.members.Voters = []ServerID{id(1)}
	cfg := testConfig(id(1), c.members, 1)
	cfg.Snapshot = Snapshot{Index: MaxIndex - 1, Term: 1, Members: c.members}
	log := newMemLog()
	log.reset(MaxIndex-1, 1)
	nd := c.start(cfg, HardState{Term: 1}, log)
	c.settle()
	require.Equal(t, RoleLeader, nd.r.Role())
	c.step(id(1), AddMember{Member: id(2), Token: "add"})
	c.settle()
	require.ErrorIs(t, nd.lastReply().Err, ErrOutOfRange)
	require.EqualValues(t, MaxIndex, nd.r.Status().LastIndex)

	nd = c.restart(id(1))
	c.settle()
	require.Equal(t, RoleFollower, nd.r.Role(), "a member with a full log stood for election")
	require.EqualValues(t, MaxIndex, nd.r.Status().LastIndex)
}

// TestACandidateAtMaxTermStopsStanding: a member whose own campaign took
// it to MaxTerm does not ask for a pre-vote at MaxTerm+1 when its round
// fails; it goes back to following.
func TestACandidateAtMaxTermStopsStanding(t *testing.T) {
	c := newTestCluster(t, 3)
	nd := c.node(id(1))
	c.nodes[id(1)].r.term = MaxTerm - 1 // as if many elections had passed
	c.isolate(id(1))
	c.step(id(1), ElectionTimeout{})
	c.step(id(1), Receive{From: id(2), Msg: &PreVoteReply{Term: MaxTerm, Granted: true}})
	require.Equal(t, RoleCandidate, nd.r.Role())
	require.EqualValues(t, MaxTerm, nd.r.Status().Term)
	acts := c.step(id(1), ElectionTimeout{})
	for _, s := range sends(acts) {
		require.LessOrEqual(t, s.Msg.MessageTerm(), uint64(MaxTerm), "sent %T at term %d", s.Msg, s.Msg.MessageTerm())
	}
	require.Equal(t, RoleFollower, nd.r.Role())
	require.LessOrEqual(t, nd.hard.Term, uint64(MaxTerm))
}
