package core

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// loseLog restarts sid with an empty log, as the server does when the
// snapshot its log continued fails verification: the member records the
// last entry of the log it lost.
func (c *testCluster) loseLog(sid ServerID) *testNode {
	old := c.node(sid)
	cfg := old.cfg
	cfg.Snapshot = Snapshot{}
	st := old.r.Status()
	cfg.RecoverTo, cfg.RecoverTerm = st.LastIndex, st.LastTerm
	return c.start(cfg, old.hard, newMemLog())
}

func TestMemberThatLostItsLogVotesAsIfItHadIt(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.propose(id(1), "a")
	c.settle()
	// s2 misses "b", which s1 and s3 commit.
	c.isolate(id(2))
	tok := c.propose(id(1), "b")
	c.settle()
	c.tick(id(1), 2)
	require.True(t, c.node(id(1)).hasToken(tok))

	// s3 loses its log, and s1 goes down.
	c.node(id(1)).down = true
	s3 := c.loseLog(id(3))
	c.heal()
	require.NotZero(t, s3.r.RecoverTo())
	require.Zero(t, s3.r.LastIndex())

	// s3 does not stand: its timer only tells the others it lost entries.
	acts := c.step(id(3), ElectionTimeout{})
	require.Equal(t, RoleFollower, s3.r.Role())
	for _, s := range sends(acts) {
		require.Equal(t, &NotLeader{Term: s3.r.Term(), Lost: true}, s.Msg)
	}
	c.deliver()

	// s2 lacks the committed "b": with an empty log s3 would elect it;
	// remembering the log it lost, it refuses.
	c.step(id(2), ElectionTimeout{})
	c.settle()
	require.NotEqual(t, RoleLeader, c.node(id(2)).r.Role(), "s3 helped elect a leader without a committed entry")

	// s1 returns and wins with s3's vote (its log is as good as the lost one).
	c.node(id(1)).down = false
	c.restart(id(1))
	c.settle()
	c.elect(id(1))
	c.tick(id(1), 5)
	require.Equal(t, c.node(id(1)).log.ents, s3.log.ents, "s3 got its log back")
	require.Zero(t, s3.r.RecoverTo(), "recovered")
	require.EqualValues(t, c.node(id(1)).r.Commit(), s3.applied)

	// Recovered, s3 may stand again.
	c.node(id(1)).down = true
	c.step(id(2), LeaderDown{Leader: id(1)})
	c.step(id(3), LeaderDown{Leader: id(1)})
	c.elect(id(3))
}

func TestLeaderForgetsWhatALostFollowerHeld(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	for _, d := range []string{"a", "b", "c"} {
		c.propose(id(1), d)
	}
	c.settle()
	c.tick(id(1), 3)
	ldr := c.node(id(1))
	require.False(t, ldr.ticker, "idle: the leader sends nothing more")

	// s3 loses its log while the leader believes it holds everything.
	s3 := c.loseLog(id(3))
	c.settle()
	c.tick(id(1), 5)
	require.Equal(t, ldr.log.ents, s3.log.ents, "the leader re-sent what s3 lost")
	require.Zero(t, s3.r.RecoverTo())

	// Without the announcement (lost), the watchdog repeats it.
	s3 = c.loseLog(id(3))
	c.inbox = nil
	require.NotZero(t, s3.timerMs, "a recovering member keeps a timer to find a leader")
	c.step(id(3), ElectionTimeout{})
	c.settle()
	c.tick(id(1), 5)
	require.Equal(t, ldr.log.ents, s3.log.ents)
	require.Zero(t, s3.r.RecoverTo())
}

func TestRemovedMemberStandsUntilItsRemovalCommits(t *testing.T) {
	c := newTestCluster(t, 4)
	c.elect(id(1))
	c.settle()
	// s1 removes itself, but the change reaches nobody; once its detector
	// suspects the others' nodes, it steps down.
	s1 := c.node(id(1))
	c.isolate(id(1))
	c.step(id(1), RemoveMember{Member: id(1), Token: "rm1"})
	c.settle()
	c.tick(id(1), 20)
	c.cutOff(id(1))
	require.Equal(t, RoleFollower, s1.r.Role())
	st := s1.r.Status()
	require.False(t, st.Members.Contains(id(1)), "s1 holds the change that removes it")
	require.Greater(t, st.MembersIndex, st.Commit, "uncommitted")
	c.heal()
	for _, o := range []int{2, 3, 4} {
		c.step(id(o), LeaderDown{Leader: id(1)})
	}

	// Its change may still need it: it stands, not counting its own vote,
	// wins, commits the change with the others, and steps down.
	acts := c.step(id(1), ElectionTimeout{})
	require.Len(t, sends(acts), 3, "pre-votes to the voters of the new config")
	c.settle()
	c.tick(id(1), 5)
	require.Equal(t, st.MembersIndex, c.node(id(2)).r.Status().MembersIndex, "the entry only s1 held reached s2")
	require.GreaterOrEqual(t, s1.r.Commit(), st.MembersIndex, "s1 committed it")
	require.Equal(t, RoleFollower, s1.r.Role(), "s1 stepped down once its removal committed")

	// Removed for good, it stands no more; the others go on without it.
	acts = c.step(id(1), ElectionTimeout{})
	for _, s := range sends(acts) {
		require.IsType(t, &NotLeader{}, s.Msg)
	}
	c.elect(id(2))
	require.GreaterOrEqual(t, c.node(id(2)).r.Commit(), st.MembersIndex)
}

func TestTheOnlyVoterLeadsAtOnceAfterARestart(t *testing.T) {
	c := newTestCluster(t, 1)
	s1 := c.node(id(1))
	require.Equal(t, RoleLeader, s1.r.Role(), "no timer to wait for")
	tok := c.propose(id(1), "a")
	c.settle()
	require.True(t, s1.hasToken(tok))
	s1 = c.restart(id(1))
	require.Equal(t, RoleLeader, s1.r.Role())
	c.settle()
	require.EqualValues(t, 3, s1.applied, "the log is applied again at once")
}

// TestAMemberThatLostItsMembersFollowsAndIsRepaired: a member that joined
// after the cluster formed keeps its members only in its snapshot and log.
// When it loses both, it knows no peer to tell. It must still follow the
// leader that contacts it, so that its recovery watchdog reaches someone;
// a follower that forgot every leader not in its (empty) configuration
// was never repaired: the leader took its rejections for stale ones.
func TestAMemberThatLostItsMembersFollowsAndIsRepaired(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	for i := range 3 {
		c.propose(id(1), "cmd"+string(rune('a'+i)))
	}
	c.settle()
	c.tick(id(1), 3)
	old := c.node(id(3))
	cfg := old.cfg
	cfg.Snapshot = Snapshot{}
	cfg.InitialMembers = Membership{}
	st := old.r.Status()
	cfg.RecoverTo, cfg.RecoverTerm = st.LastIndex, st.LastTerm
	s3 := c.start(cfg, old.hard, newMemLog())
	require.Empty(t, s3.r.Status().Members.Voters)

	c.propose(id(1), "d") // the leader contacts s3, which rejects
	c.settle()
	require.Equal(t, id(1), s3.r.Leader(), "s3 follows the leader that contacts it")
	c.step(id(3), ElectionTimeout{}) // its watchdog: tell the leader it lost entries
	c.settle()
	c.tick(id(1), 5)
	require.Zero(t, s3.r.RecoverTo(), "recovered")
	require.Equal(t, c.node(id(1)).r.LastIndex(), s3.r.LastIndex())
	require.Equal(t, c.node(id(1)).log.ents, s3.log.ents)
}

// In a cluster of four, a candidate that lacks a committed entry loses: the
// two members that lost that entry (which with the leader made its quorum)
// refuse it, though their shortened logs are no newer than its log.
func TestMembersThatLostAnEntryDoNotElectALeaderWithoutIt(t *testing.T) {
	c := newTestCluster(t, 4)
	c.elect(id(1))
	c.propose(id(1), "a")
	c.settle()
	// s4 misses "b", which s1, s2 and s3 commit.
	c.isolate(id(4))
	tok := c.propose(id(1), "b")
	c.settle()
	c.tick(id(1), 2)
	require.True(t, c.node(id(1)).hasToken(tok))

	// s2 and s3 lose their logs; s1 goes down.
	c.node(id(1)).down = true
	c.loseLog(id(2))
	c.loseLog(id(3))
	c.heal()
	c.step(id(4), LeaderDown{Leader: id(1)})
	for range 3 {
		c.step(id(4), ElectionTimeout{})
		c.settle()
		require.NotEqual(t, RoleLeader, c.node(id(4)).r.Role(),
			"members that lost a committed entry elected a leader without it")
	}

	// s1 returns; it holds "b" and wins with the others' votes (s2's and
	// s3's vouch: s1's log is as good as the ones they lost).
	c.node(id(1)).down = false
	c.restart(id(1))
	c.elect(id(1))
}

// A member that lost its log and got the lost entries back, durably, from
// a leader that never learned of it (so their commit is unknown) stands
// again: its log is as up to date as the one it lost, and the only other
// survivor lacks those entries.
func TestRecoveringMemberThatRegainedTheLostLogStands(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.propose(id(1), "a")
	c.settle()
	c.tick(id(1), 2)
	// s3 is cut off, and s2's answers to s1 are lost: "b" reaches s2
	// durably but is never committed.
	c.isolate(id(3))
	c.cut[[2]ServerID{id(2), id(1)}] = true
	c.propose(id(1), "b")
	c.settle()
	// s2 loses its log and, its answers still lost, gets it back from s1.
	s2 := c.loseLog(id(2))
	want := s2.r.RecoverTo()
	require.NotZero(t, want)
	// s1 hears only s2's refusals, which walk its probe back to where the
	// logs agree; s2's acknowledgements stay lost.
	delete(c.cut, [2]ServerID{id(2), id(1)})
	c.step(id(2), ElectionTimeout{}) // it tells the others it lost entries
	for i := 0; len(c.inbox) > 0 || len(s2.pending) > 0; i++ {
		require.Less(t, i, 1000)
		if len(c.inbox) == 0 {
			c.flush(id(2))
			continue
		}
		e := c.inbox[0]
		c.inbox = c.inbox[1:]
		if ar, ok := e.msg.(*AppendReply); ok && ar.Success || c.cut[[2]ServerID{e.from, e.to}] {
			continue
		}
		c.step(e.to, Receive{From: e.from, Msg: e.msg})
	}
	require.Equal(t, c.node(id(1)).r.LastIndex(), s2.r.LastIndex())
	require.Less(t, s2.r.Commit(), want)
	require.Zero(t, s2.r.RecoverTo(), "its log is as up to date as the lost one")

	// s1 goes down. s3 lacks "b", so s2 refuses it; s2 stands and wins.
	c.node(id(1)).down = true
	c.heal()
	c.step(id(3), LeaderDown{Leader: id(1)})
	c.step(id(3), ElectionTimeout{})
	c.settle()
	require.NotEqual(t, RoleLeader, c.node(id(3)).r.Role())
	c.step(id(2), LeaderDown{Leader: id(1)})
	c.elect(id(2))
	tok := c.propose(id(2), "c")
	c.settle()
	c.tick(id(2), 5)
	require.True(t, s2.hasToken(tok))
	require.Equal(t, s2.log.ents, c.node(id(3)).log.ents)
}
