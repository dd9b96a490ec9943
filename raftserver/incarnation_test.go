package raftserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver/core"
)

// waitBound waits until every member of c reports all of c's members bound
// to an incarnation, and the binding committed on each.
func (c *cluster) waitBound() {
	c.t.Helper()
	for i := range c.members {
		c.waitStatus(i, "members bound", func(st *ServerStatus) bool {
			return len(st.Incarnations) == len(c.members) && st.Commit == st.LastIndex
		})
	}
}

// The amnesia scenario: a member lags, another loses its data and comes
// back under its old ID, and the member that had everything is down. The
// wiped replica must not help the laggard lead, or the writes that only
// the other two acknowledged are lost. Rejoin then brings it back.
func TestWipedReplicaDoesNotVoteUntilItRejoins(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	c.waitBound()
	a, wiped, lagging := c.members[0], c.members[1], c.members[2]
	incs := c.status(0).Incarnations
	require.Equal(t, c.status(1).Incarnation, incs[wiped])

	require.NoError(t, c.systems[2].StopServer(c.ctx(), lagging))
	acked := map[string]string{}
	for i := range 20 {
		k := fmt.Sprint("k", i)
		_, _, err := s.ProcessCommand(c.ctx(), a, []byte("set "+k+" v"))
		require.NoError(t, err)
		acked[k] = "v"
	}
	require.NoError(t, c.systems[0].StopServer(c.ctx(), a))
	require.NoError(t, c.systems[1].ForceDeleteServer(c.ctx(), wiped))
	require.NoError(t, c.systems[1].StartServer(c.ctx(), ServerConfig{ID: wiped, Cluster: "kv", Machine: MachineSpec{Kind: "kv"}, InitialMembers: c.members}))
	require.NoError(t, c.systems[2].RestartServer(c.ctx(), lagging))
	require.NotEqual(t, incs[wiped], c.status(1).Incarnation, "a new replica is a new incarnation")

	// The wiped replica and the laggard elect nobody: the laggard drops the
	// wiped one's votes.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, _, err := s.ProcessCommand(ctx, lagging, []byte("set lost? yes"))
	cancel()
	require.Error(t, err, "a leader was elected with a wiped replica's vote")
	st := c.status(2)
	require.NotEqual(t, "leader", st.Role)
	require.Equal(t, []ServerID{wiped}, st.Strangers)

	// The member with everything returns: every acknowledged write is there.
	require.NoError(t, c.systems[0].RestartServer(c.ctx(), a))
	for k, v := range acked {
		got, _, err := s.ConsistentQuery(c.ctx(), lagging, []byte("get "+k))
		require.NoError(t, err)
		require.Equal(t, v, string(got), k)
	}
	leader, err := s.WaitForLeader(c.ctx(), a)
	require.NoError(t, err)
	require.Contains(t, []ServerID{a, lagging}, leader)

	// Adding it back as it is now is refused; Rejoin replaces it.
	_, err = s.AddMember(c.ctx(), a, wiped)
	require.ErrorIs(t, err, ErrMembershipChange)
	_, err = s.Rejoin(c.ctx(), a, wiped)
	require.NoError(t, err)
	c.waitStatus(1, "rejoined", func(st *ServerStatus) bool {
		return !st.Stale && st.Incarnations[wiped] == st.Incarnation && st.Commit == st.LastIndex
	})
	voters, _, err := s.Members(c.ctx(), a)
	require.NoError(t, err)
	require.ElementsMatch(t, c.members, voters)
	got, _, err := s.LocalQuery(c.ctx(), wiped, []byte("get k19"))
	require.NoError(t, err)
	require.Equal(t, "v", string(got))
	require.Empty(t, c.status(c.index(leader)).Strangers)
}

// A replica is a member of a configuration that names its ID unbound or
// bound to its own incarnation; a binding to another incarnation names a
// former replica, whose removal the new one applies on its way back in
// and must not take as its own.
func TestMemberOfComparesIncarnations(t *testing.T) {
	self := ServerID{Name: "s2", Node: "n2"}
	other := ServerID{Name: "s1", Node: "n1"}
	s := &server{self: self, incarnation: 7}
	for _, tc := range []struct {
		name string
		m    core.Membership
		want bool
	}{
		{"not named", core.Membership{Voters: []ServerID{other}}, false},
		{"named unbound", core.Membership{Voters: []ServerID{other, self}}, true},
		{"named as a non-voter", core.Membership{Voters: []ServerID{other}, NonVoters: []ServerID{self}}, true},
		{"bound to this replica", core.Membership{Voters: []ServerID{other, self}, Incarnations: map[ServerID]uint64{self: 7}}, true},
		{"bound to a former replica", core.Membership{Voters: []ServerID{other, self}, Incarnations: map[ServerID]uint64{self: 6}}, false},
	} {
		require.Equal(t, tc.want, s.memberOf(tc.m), tc.name)
	}
}
