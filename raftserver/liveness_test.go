package raftserver

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
)

// isolate cuts every link between system i and the other systems of c, in
// both directions; heal undoes it.
func (c *cluster) isolate(i int) {
	for j, s := range c.systems {
		if j != i && s != nil {
			c.systems[i].Node().Block(s.Name(), true, true)
			s.Node().Block(c.systems[i].Name(), true, true)
		}
	}
}

func (c *cluster) heal() {
	for _, a := range c.systems {
		for _, b := range c.systems {
			if a != nil && b != nil && a != b {
				a.Node().Block(b.Name(), false, false)
			}
		}
	}
}

func TestIdleLeaderCutOffFromAMajorityStopsSayingItLeads(t *testing.T) {
	c := startCluster(t, 3)
	_, leader, err := c.systems[0].ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	i := c.index(leader)
	s := c.systems[i]
	// Let the cluster go idle: the leader has nothing in flight, so no
	// check-quorum runs; only the failure detector can tell.
	require.Eventually(t, func() bool {
		st, err := s.Overview(c.ctx(), leader)
		return err == nil && st.Commit == st.LastIndex
	}, waitFor, 10*time.Millisecond)
	c.isolate(i)
	defer c.heal()
	require.Eventually(t, func() bool {
		_, _, err := s.Leader("kv")
		return errors.Is(err, ErrNoLeader)
	}, waitFor, 10*time.Millisecond, "the cut-off leader's node still names it leader")
	st, err := s.Overview(c.ctx(), leader)
	require.NoError(t, err)
	require.NotEqual(t, "leader", st.Role)
	_, _, err = s.LeaderQuery(shortCtx(t), leader, []byte("get a"))
	require.Error(t, err, "a leader query finds no leader on the cut-off node")

	// Healed, the cluster serves again.
	c.heal()
	_, _, err = s.ProcessCommand(c.ctx(), leader, []byte("set a 2"))
	require.NoError(t, err)
}

// shortCtx is a context for calls expected to fail: they end with it.
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestStoppingLeaderAnswersWhatItHolds(t *testing.T) {
	// Neither check-quorum nor the failure detector may step the cut-off
	// leader down during the test: only its stop answers the callers.
	c := startClusterOf(t, 3, "kv", func(cfg *SystemConfig) {
		cfg.Raft.CheckQuorumWindow = 10 * time.Minute
		fd := failuredetector.DefaultConfig()
		fd.AcceptablePause = 10 * time.Minute
		cfg.FailureDetector = &fd
	})
	_, leader, err := c.systems[0].ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	i := c.index(leader)
	s := c.systems[i]
	c.isolate(i)
	defer c.heal()

	// The deadline is long: a caller left waiting would end with
	// ErrTimeout, the bug.
	ctx := c.ctx()
	cmdErr := make(chan error, 1)
	go func() {
		_, _, err := s.ProcessCommand(ctx, leader, []byte("set b 1"))
		cmdErr <- err
	}()
	queryErr := make(chan error, 1)
	require.Eventually(t, func() bool {
		st, err := s.Overview(c.ctx(), leader)
		return err == nil && st.LastIndex > st.Commit
	}, waitFor, 5*time.Millisecond, "the command is appended and cannot commit")
	go func() {
		_, _, err := s.ConsistentQuery(ctx, leader, []byte("get a"))
		queryErr <- err
	}()
	// Give the query time to reach the leader, where it waits for a
	// quorum's confirmation that cannot come. (If it arrived after the
	// stop instead, it must still end at once.)
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.StopServer(c.ctx(), leader))

	err = <-cmdErr
	require.ErrorIs(t, err, ErrLeadershipLost, "the appended command's outcome is unknown")
	err = <-queryErr
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrTimeout, "the query waited out its deadline")
	require.NotErrorIs(t, err, actor.ErrTimeout)
}
