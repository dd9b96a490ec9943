package raftserver

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAddAndRemoveMember(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set before join"))
	require.NoError(t, err)

	// A fourth server joins: start it empty, then add it.
	joiner := ServerID{Name: "kv4", Node: c.systems[1].Name()}
	require.NoError(t, s.StartServer(c.ctx(), ServerConfig{ID: joiner, Cluster: "kv", Machine: MachineSpec{Kind: "kv"}}))
	_, err = s.AddMember(c.ctx(), c.members[0], joiner)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, _, err := s.LocalQuery(c.ctx(), joiner, []byte("get before"))
		return err == nil && string(got) == "join"
	}, waitFor, 10*time.Millisecond, "the new member catches up")
	voters, _, err := s.Members(c.ctx(), joiner)
	require.NoError(t, err)
	require.ElementsMatch(t, append(c.members, joiner), voters)

	// Adding it again is refused with a typed error.
	_, err = s.AddMember(c.ctx(), c.members[0], joiner)
	require.ErrorIs(t, err, ErrMembershipChange)

	// Remove the leader itself: it steps down, the others go on.
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set x 1"))
	require.NoError(t, err)
	_, err = s.RemoveMember(c.ctx(), c.members[0], leader)
	require.NoError(t, err)
	var rest []ServerID
	for _, m := range append(c.members, joiner) {
		if m != leader {
			rest = append(rest, m)
		}
	}
	_, newLeader, err := s.ProcessCommand(c.ctx(), rest[0], []byte("set after removal"))
	require.NoError(t, err)
	require.NotEqual(t, leader, newLeader)
	voters, _, err = s.Members(c.ctx(), rest[0])
	require.NoError(t, err)
	require.ElementsMatch(t, rest, voters)
	// The removed server stopped itself.
	require.Eventually(t, func() bool {
		_, err := s.Overview(c.ctx(), leader)
		return errors.Is(err, ErrNoSuchServer)
	}, waitFor, 10*time.Millisecond)
}

// TestRemovedFollowerStops: a follower removed from a healthy cluster hears
// of its removal, applies it and stops, its data kept until deleted; the
// others go on without it. (The leader stops replicating to a member once
// a configuration without it is appended, so before the leader told it,
// a removed follower ran on for ever, following a leader that no longer
// spoke to it.)
func TestRemovedFollowerStops(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set x 1"))
	require.NoError(t, err)
	i := slices.IndexFunc(c.members, func(m ServerID) bool { return m != leader })
	follower, home := c.members[i], c.systems[i]
	_, err = s.RemoveMember(c.ctx(), leader, follower)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := s.Overview(c.ctx(), follower)
		return errors.Is(err, ErrNoSuchServer)
	}, waitFor, 10*time.Millisecond, "the removed follower still runs")
	st, err := home.LocalServer(c.ctx(), follower.Name)
	require.NoError(t, err, "its data went with it")
	require.False(t, st.Running)

	_, _, err = s.ProcessCommand(c.ctx(), leader, []byte("set y 1"))
	require.NoError(t, err)
	voters, _, err := s.Members(c.ctx(), leader)
	require.NoError(t, err)
	require.NotContains(t, voters, follower)
}

// TestRemovedFollowerThatWasDownStops: a follower whose node is down while
// it is removed misses what the leader tells it, and the leader gives up.
// Back, it asks for votes; the leader tells it then, and it stops instead
// of asking for ever.
func TestRemovedFollowerThatWasDownStops(t *testing.T) {
	logs := &messageLog{}
	c := startClusterOf(t, 3, "kv", func(cfg *SystemConfig) {
		cfg.Raft.TickInterval = 10 * time.Millisecond // the leader gives up after 100 ticks
		cfg.Logger = slog.New(logs)
	})
	s := c.systems[0]
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set x 1"))
	require.NoError(t, err)
	i := 1 // a follower, not on the node the test calls through
	if c.members[i] == leader {
		i = 2
	}
	follower := c.members[i]
	require.NoError(t, c.systems[i].Stop())
	c.systems[i] = nil
	_, err = s.RemoveMember(c.ctx(), leader, follower)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return logs.count(msgGaveUpLeaving) > 0 }, waitFor, 10*time.Millisecond,
		"the leader never gave up telling the removed follower")

	c.restart(i)
	require.Eventually(t, func() bool {
		st, err := c.systems[i].LocalServer(c.ctx(), follower.Name)
		return err == nil && !st.Running
	}, waitFor, 10*time.Millisecond, "the removed follower runs on after its restart")
	voters, _, err := s.Members(c.ctx(), leader)
	require.NoError(t, err)
	require.NotContains(t, voters, follower)
}

// msgGaveUpLeaving is what a leader logs when it stops telling a removed
// follower of its removal.
const msgGaveUpLeaving = "a removed member did not hear of its removal; it is told if it asks for votes"

// messageLog counts the messages logged at info level and above.
type messageLog struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (l *messageLog) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msgs[msg]
}

func (l *messageLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }

func (l *messageLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msgs == nil {
		l.msgs = map[string]int{}
	}
	l.msgs[r.Message]++
	return nil
}

func (l *messageLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *messageLog) WithGroup(string) slog.Handler      { return l }

func TestAddNonVoterThenPromote(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	learner := ServerID{Name: "learner", Node: c.systems[2].Name()}
	require.NoError(t, s.StartServer(c.ctx(), ServerConfig{ID: learner, Cluster: "kv", Machine: MachineSpec{Kind: "kv"}}))
	_, err := s.AddNonVoter(c.ctx(), c.members[0], learner)
	require.NoError(t, err)
	st, err := s.Overview(c.ctx(), c.members[0])
	require.NoError(t, err)
	require.Equal(t, []ServerID{learner}, st.NonVoters)
	_, err = s.AddMember(c.ctx(), c.members[0], learner)
	require.NoError(t, err)
	st, err = s.Overview(c.ctx(), c.members[0])
	require.NoError(t, err)
	require.Empty(t, st.NonVoters)
	require.Contains(t, st.Voters, learner)
}

func TestTransferLeadership(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	var target ServerID
	for _, m := range c.members {
		if m != leader {
			target = m
			break
		}
	}
	require.NoError(t, s.TransferLeadership(c.ctx(), c.members[0], target))
	require.Eventually(t, func() bool {
		st, err := s.Overview(c.ctx(), target)
		return err == nil && st.Role == "leader"
	}, waitFor, 10*time.Millisecond)
	_, now, err := s.ProcessCommand(c.ctx(), leader, []byte("set a 2"))
	require.NoError(t, err)
	require.Equal(t, target, now)

	err = s.TransferLeadership(c.ctx(), c.members[0], ServerID{Name: "stranger", Node: s.Name()})
	require.ErrorIs(t, err, ErrMembershipChange)
}

func TestFullRestartKeepsEveryAcknowledgedCommand(t *testing.T) {
	c := startFixedCluster(t, 3)
	acked := c.load(c.systems[0], "k", 3000, 16)
	require.Len(t, acked, 3000)
	for i, s := range c.systems {
		require.NoError(t, s.Stop())
		c.systems[i] = nil
	}
	for i := range c.systems {
		c.restart(i)
	}
	c.check(c.systems[0], acked)
	for i, m := range c.members {
		require.Eventually(t, func() bool {
			got, _, err := c.systems[i].LocalQuery(c.ctx(), m, []byte("len"))
			return err == nil && string(got) == "3000"
		}, waitFor, 10*time.Millisecond, "member %s replays its log", m)
	}
}

func TestStopRestartAndDeleteServer(t *testing.T) {
	// DeleteCluster deletes the members on the other nodes too.
	c := startClusterOf(t, 3, "kv", func(cfg *SystemConfig) { cfg.AllowRemoteDelete = true })
	s := c.systems[0]
	_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	require.NoError(t, s.StopServer(c.ctx(), c.members[2]))
	_, err = s.Overview(c.ctx(), c.members[2])
	require.ErrorIs(t, err, ErrNoSuchServer)
	_, _, err = s.ProcessCommand(c.ctx(), c.members[0], []byte("set a 2"))
	require.NoError(t, err, "two of three still commit")
	require.NoError(t, s.RestartServer(c.ctx(), c.members[2]))
	require.Eventually(t, func() bool {
		got, _, err := s.LocalQuery(c.ctx(), c.members[2], []byte("get a"))
		return err == nil && string(got) == "2"
	}, waitFor, 10*time.Millisecond)

	require.NoError(t, s.DeleteCluster(c.ctx(), c.members))
	for _, m := range c.members {
		_, err := s.Overview(c.ctx(), m)
		require.ErrorIs(t, err, ErrNoSuchServer)
		require.ErrorIs(t, s.RestartServer(c.ctx(), m), ErrNoSuchServer)
	}
	_, _, ok := s.Leaderboard().Lookup("kv")
	require.False(t, ok)
	// The cluster can be created again from scratch.
	_, _, err = s.StartCluster(c.ctx(), "kv", MachineSpec{Kind: "kv"}, c.members)
	require.NoError(t, err)
	got, _, err := s.ConsistentQuery(c.ctx(), c.members[0], []byte("len"))
	require.NoError(t, err)
	require.Equal(t, "0", string(got), "a deleted cluster's data is gone")
}
