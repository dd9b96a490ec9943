package raftserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

func TestLeaderWithoutQuorumAnswersInsteadOfHanging(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	for _, m := range c.members {
		if m != leader {
			require.NoError(t, s.StopServer(c.ctx(), m))
		}
	}
	// The leader cannot commit: the monitors of its peers' processes fire,
	// and it steps down at once instead of holding callers.
	deadline := time.Now().Add(waitFor)
	for {
		st, err := s.Overview(c.ctx(), leader)
		require.NoError(t, err)
		if st.Role != "leader" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the leader of stopped members still leads")
		time.Sleep(10 * time.Millisecond)
	}
	_, _, err = s.Leader("kv")
	require.ErrorIs(t, err, ErrNoLeader)

	// The lone member knows no leader now: a command fails with
	// ErrNoLeader once the caller stops waiting for an election.
	short, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	_, _, err = s.ProcessCommand(short, leader, []byte("set a 3"))
	require.ErrorIs(t, err, ErrNoLeader)
	short2, cancel3 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel3()
	_, _, err = s.ConsistentQuery(short2, leader, []byte("len"))
	require.ErrorIs(t, err, ErrNoLeader)
}

func TestShuttingDownAndUnknownCluster(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	leader, members, err := s.Leader("kv")
	require.NoError(t, err)
	require.Contains(t, c.members, leader)
	require.ElementsMatch(t, c.members, members)
	_, _, err = s.Leader("nope")
	require.ErrorIs(t, err, ErrNoSuchCluster)

	require.NoError(t, s.Stop())
	c.systems[0] = nil
	_, _, err = s.ProcessCommand(context.Background(), c.members[1], []byte("set a 2"))
	require.ErrorIs(t, err, ErrShuttingDown)
}

func TestNotEnoughMembers(t *testing.T) {
	s := startSystem(t, t.TempDir())
	t.Cleanup(func() { _ = s.Stop() })
	members := []ServerID{
		{Name: "m1", Node: s.Name()},
		{Name: "m2", Node: freeAddress(t)}, // no node there
		{Name: "m3", Node: freeAddress(t)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	started, notStarted, err := s.StartCluster(ctx, "thin", MachineSpec{Kind: "kv"}, members)
	require.ErrorIs(t, err, ErrNotEnoughMembers)
	require.Empty(t, started)
	require.ElementsMatch(t, members, notStarted)
	// The member that did start was removed again.
	_, err = s.Overview(context.Background(), members[0])
	require.ErrorIs(t, err, ErrNoSuchServer)

	_, _, err = s.StartCluster(ctx, "dup", MachineSpec{Kind: "kv"}, []ServerID{members[0], members[0]})
	require.ErrorIs(t, err, ErrInvalidConfig)
}

func TestSeveralMembersOfOneClusterOnOneNode(t *testing.T) {
	s := startSystem(t, t.TempDir())
	t.Cleanup(func() { _ = s.Stop() })
	var members []ServerID
	for i := range 3 {
		members = append(members, ServerID{Name: fmt.Sprint("local", i), Node: s.Name()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, _, err := s.StartCluster(ctx, "local", MachineSpec{Kind: "kv"}, members)
	require.NoError(t, err)
	for i := range 100 {
		_, _, err := s.ProcessCommand(ctx, members[i%3], []byte(fmt.Sprintf("set k%d v", i)))
		require.NoError(t, err)
	}
	for _, m := range members {
		require.Eventually(t, func() bool {
			got, _, err := s.LocalQuery(ctx, m, []byte("len"))
			return err == nil && string(got) == "100"
		}, waitFor, 10*time.Millisecond, "member %s", m)
	}
}

func TestRedirectNamesTheLeader(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	for _, m := range c.members {
		_, l, err := s.ProcessCommand(c.ctx(), m, []byte("set a 2"))
		require.NoError(t, err)
		require.Equal(t, leader, l, "asked %s", m)
	}
	// A follower answers a direct call with ErrNotLeader naming the leader.
	for _, m := range c.members {
		if m == leader {
			continue
		}
		res, err := s.call(c.ctx(), m, &commandReq{Data: []byte("set a 3")})
		require.NoError(t, err)
		err = res.(*commandResult).Err.err(m)
		var nl *NotLeaderError
		require.ErrorAs(t, err, &nl)
		require.Equal(t, leader, nl.Leader)
		require.ErrorIs(t, err, ErrNotLeader)
	}
}

func TestCallErrorsMapOntoOurs(t *testing.T) {
	for _, tc := range []struct {
		actor, ours error
	}{
		{actor.ErrNoProcess, ErrNoSuchServer},
		{actor.ErrNodeDown, ErrUnreachable},
		{actor.ErrTimeout, ErrTimeout},
		{actor.ErrNodeLost, ErrTimeout}, // outcome unknown, known at once
		{actor.ErrProcessExited, ErrTimeout},
		{actor.ErrNodeStopped, ErrShuttingDown},
	} {
		err := callError("kv1@n1", fmt.Errorf("call kv1: %w", tc.actor))
		require.ErrorIs(t, err, tc.ours, "%v", tc.actor)
		require.ErrorIs(t, err, tc.actor, "the cause stays visible")
	}
}
