package core

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// newIncarnatedCluster is newTestCluster with member i running as
// incarnation 10+i.
func newIncarnatedCluster(t *testing.T, n int) *testCluster {
	c := &testCluster{t: t, nodes: map[ServerID]*testNode{}, cut: map[[2]ServerID]bool{}}
	for i := 1; i <= n; i++ {
		c.members.Voters = append(c.members.Voters, id(i))
	}
	for i := 1; i <= n; i++ {
		cfg := testConfig(id(i), c.members, i)
		cfg.Incarnation = uint64(10 + i)
		c.start(cfg, HardState{}, newMemLog())
	}
	return c
}

// wipe restarts sid as a new replica under the same name: no log, no
// term or vote, the initial members, and incarnation inc.
func (c *testCluster) wipe(sid ServerID, inc uint64) *testNode {
	cfg := testConfig(sid, c.members, 100+int(inc))
	cfg.Incarnation = inc
	return c.start(cfg, HardState{}, newMemLog())
}

func TestLeaderBindsEachMemberToItsIncarnation(t *testing.T) {
	c := newIncarnatedCluster(t, 3)
	c.elect(id(1))
	c.tick(id(1), 3)
	for _, sid := range c.ids {
		m := c.node(sid).r.Status().Members
		require.Equal(t, map[ServerID]uint64{id(1): 11, id(2): 12, id(3): 13}, m.Incarnations, "%s", sid)
	}
	// The binding survives the log's encoding.
	m := c.node(id(2)).r.Status().Members
	back, err := DecodeMembership(m.AppendBinary(nil))
	require.NoError(t, err)
	require.Equal(t, m, back)
}

// The scenario that lost every acknowledged write before incarnations: a
// member lags, another loses its disk and restarts under its old name, and
// the one that had everything is down. The wiped member's votes must not
// count, so no leader can be elected without the acknowledged writes.
func TestWipedMemberCannotElectALeaderThatLacksCommittedEntries(t *testing.T) {
	c := newIncarnatedCluster(t, 3)
	c.elect(id(1))
	c.tick(id(1), 3) // the bindings commit
	c.isolate(id(3))
	var toks []string
	for i := range 5 {
		toks = append(toks, c.propose(id(1), fmt.Sprint("w", i)))
	}
	c.settle()
	c.tick(id(1), 2)
	for _, tok := range toks {
		require.True(t, c.node(id(1)).hasToken(tok), "acknowledged by s1 and s2")
	}
	committed := c.node(id(1)).r.Commit()

	c.node(id(1)).down = true
	s2 := c.wipe(id(2), 22)
	c.heal()
	c.step(id(3), LeaderDown{Leader: id(1)})
	for range 3 {
		c.step(id(3), ElectionTimeout{})
		c.settle()
		c.step(id(2), ElectionTimeout{})
		c.settle()
	}
	require.NotEqual(t, RoleLeader, c.node(id(3)).r.Role(), "the wiped member's vote counted")
	require.NotEqual(t, RoleLeader, s2.r.Role(), "the wiped member led")
	require.Equal(t, []Stranger{{ID: id(2), Incarnation: 22}}, c.node(id(3)).r.Status().Strangers)

	// s1 returns and leads with s3; it names the wiped member a stranger.
	c.node(id(1)).down = false
	c.restart(id(1))
	c.elect(id(1))
	c.tick(id(1), 3)
	require.Equal(t, []Stranger{{ID: id(2), Incarnation: 22}}, c.node(id(1)).r.Status().Strangers)
	require.GreaterOrEqual(t, c.node(id(3)).r.Commit(), committed)

	// Added as what it is, a new replica that caught up, it votes again.
	c.step(id(1), AddMember{Member: id(2), Voter: true, Incarnation: 22, Token: "bad"})
	require.ErrorIs(t, c.node(id(1)).lastReply().Err, ErrOtherIncarnation)
	c.step(id(1), RemoveMember{Member: id(2), Token: "rm"})
	c.settle()
	c.tick(id(1), 3)
	c.step(id(1), AddMember{Member: id(2), Incarnation: 22, Token: "add"})
	c.settle()
	c.tick(id(1), 3)
	c.step(id(1), AddMember{Member: id(2), Voter: true, Token: "promote"})
	c.settle()
	c.tick(id(1), 3)
	m := c.node(id(1)).r.Status().Members
	require.True(t, m.IsVoter(id(2)))
	require.EqualValues(t, 22, m.Incarnation(id(2)))
	require.False(t, s2.r.Status().Stale)
	require.Empty(t, c.node(id(1)).r.Status().Strangers)
	require.Equal(t, c.node(id(1)).log.ents, s2.log.ents)

	// s2 now counts: with s1 down, s2 and s3 elect a leader holding every
	// acknowledged write.
	c.node(id(1)).down = true
	c.step(id(2), LeaderDown{Leader: id(1)})
	c.step(id(3), LeaderDown{Leader: id(1)})
	c.elect(id(2))
	require.GreaterOrEqual(t, s2.r.LastIndex(), committed)
}

// A replica that knows the configuration binds its name to another
// incarnation (it got that configuration from a snapshot or the log)
// neither stands nor votes.
func TestStaleIncarnationNeitherStandsNorVotes(t *testing.T) {
	c := newIncarnatedCluster(t, 3)
	bound := c.members.bind(id(1), 11).bind(id(2), 12).bind(id(3), 13)
	cfg := testConfig(id(2), bound, 7)
	cfg.Incarnation = 22
	s2 := c.start(cfg, HardState{}, newMemLog())
	require.True(t, s2.r.Status().Stale)
	acts := c.step(id(2), ElectionTimeout{})
	require.Equal(t, RoleFollower, s2.r.Role())
	for _, s := range sends(acts) {
		_, pre := s.Msg.(*PreVoteRequest)
		require.False(t, pre, "a stale member stood")
	}
	acts = c.step(id(2), Receive{From: id(1), Incarnation: 11, Msg: &VoteRequest{Term: 5, LastIndex: 9, LastTerm: 4}})
	require.Equal(t, []Send{{To: id(1), Msg: &VoteReply{Term: 5}}}, sends(acts))
	acts = c.step(id(2), Receive{From: id(3), Incarnation: 13, Msg: &PreVoteRequest{Term: 6, LastIndex: 9, LastTerm: 4}})
	require.Equal(t, []Send{{To: id(3), Msg: &PreVoteReply{Term: 5}}}, sends(acts))
}

// A member whose configuration is older than the leader's may bind the
// leader's name to an incarnation the leader has since replaced (it lost
// its disk, rejoined and was elected). It still follows that leader, and
// learns the new binding from it; only votes and acknowledgements from an
// unexpected incarnation are dropped.
func TestOutdatedBindingStillFollowsTheLeader(t *testing.T) {
	c := newIncarnatedCluster(t, 3)
	bound := c.members.bind(id(1), 11).bind(id(2), 12).bind(id(3), 13)
	cfg := testConfig(id(3), bound, 7)
	cfg.Incarnation = 13
	s3 := c.start(cfg, HardState{}, newMemLog())
	c.step(id(3), Receive{From: id(1), Incarnation: 21, Msg: &Heartbeat{Term: 4, Seq: 1}})
	require.Equal(t, id(1), s3.r.Leader())
	require.Equal(t, uint64(4), s3.r.Term())
	acts := c.step(id(3), Receive{From: id(1), Incarnation: 21, Msg: &VoteRequest{Term: 5, LastIndex: 9, LastTerm: 4}})
	require.Empty(t, sends(acts), "a request for a vote from another incarnation is dropped")
	require.Equal(t, []Stranger{{ID: id(1), Incarnation: 21}}, s3.r.Status().Strangers)
}

// A leader that removes itself does not bind itself in the configuration
// that leaves it out.
func TestLeaderRemovingItselfBindsNothing(t *testing.T) {
	c := newIncarnatedCluster(t, 3)
	c.elect(id(1))
	c.tick(id(1), 3)
	c.step(id(1), RemoveMember{Member: id(1), Token: "rm"})
	c.settle()
	c.tick(id(1), 3)
	for _, sid := range []ServerID{id(2), id(3)} {
		m := c.node(sid).r.Status().Members
		require.NoError(t, m.Validate())
		require.False(t, m.Contains(id(1)))
		require.Equal(t, map[ServerID]uint64{id(2): 12, id(3): 13}, m.Incarnations)
	}
}

// A replica created again from its initial members, after its disk was
// lost, is led by a member added since, which those members do not name.
// It keeps following that leader, and acknowledges what it writes.
func TestReplicaOnInitialMembersFollowsALeaderAddedSince(t *testing.T) {
	c := newIncarnatedCluster(t, 3)
	cfg := testConfig(id(3), c.members, 9)
	cfg.Incarnation = 33
	s3 := c.start(cfg, HardState{}, newMemLog())
	s4 := id(4)
	acts := c.step(id(3), Receive{From: s4, Incarnation: 44, Msg: &AppendEntries{Term: 7, Commit: 1,
		Entries: []Entry{{Index: 1, Term: 7, Type: EntryNoop}}}})
	require.Equal(t, s4, s3.r.Leader())
	c.inbox = nil
	require.NotEmpty(t, acts)
	acts = c.step(id(3), Written{Term: 7, To: 1})
	require.Equal(t, s4, s3.r.Leader(), "it forgot the leader its initial members do not name")
	var acked bool
	for _, s := range sends(acts) {
		if r, ok := s.Msg.(*AppendReply); ok && s.To == s4 && r.Success && r.LastIndex == 1 {
			acked = true
		}
	}
	require.True(t, acked, "the write is acknowledged to the leader")
}
