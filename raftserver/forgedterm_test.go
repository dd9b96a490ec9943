package raftserver

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver/core"
)

// commitOne has a command committed through any member within waitFor.
func (c *cluster) commitOne(key string) {
	c.t.Helper()
	i := 0
	require.Eventually(c.t, func() bool {
		i++
		s := c.systems[i%len(c.systems)]
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _, err := s.ProcessCommand(ctx, c.members[i%len(c.members)], []byte("set "+key+" 1"))
		return err == nil
	}, waitFor, 10*time.Millisecond, "command %q did not commit", key)
}

// agreedLeader waits until every member reports the same leader, and
// returns it.
func (c *cluster) agreedLeader(what string) ServerID {
	c.t.Helper()
	var lead ServerID
	require.Eventually(c.t, func() bool {
		lead = ServerID{}
		for i, m := range c.members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.systems[i].Overview(ctx, m)
			cancel()
			if err != nil || st.Leader.IsZero() || (!lead.IsZero() && st.Leader != lead) {
				return false
			}
			lead = st.Leader
		}
		return true
	}, waitFor, 20*time.Millisecond, "no agreed leader %s", what)
	return lead
}

// requireTermsInRange checks that no member holds a term above MaxTerm.
func (c *cluster) requireTermsInRange(what string) {
	c.t.Helper()
	for i, m := range c.members {
		st, err := c.systems[i].Overview(c.ctx(), m)
		require.NoError(c.t, err)
		require.LessOrEqual(c.t, st.Term, uint64(core.MaxTerm), "%s holds term %d %s", m, st.Term, what)
	}
}

// TestForgedTopTermDoesNotBrickACluster sends, from a node outside the
// cluster, forged Raft messages at term 2^64-1 to a follower (as from the
// leader) and to the leader (as from a follower) of a running 3-member
// cluster. Before terms were bounded the receivers adopted and persisted
// the term, their next pre-vote term wrapped to 0 and no election could
// ever be won again, restarts included. Now the messages are refused when
// they are decoded: the cluster keeps a leader, commits commands, and
// elects one again after every system restarts.
func TestForgedTopTermDoesNotBrickACluster(t *testing.T) {
	for _, forged := range []core.Message{
		&core.Heartbeat{Term: math.MaxUint64, Seq: 1, Commit: 1},
		&core.AppendEntries{Term: math.MaxUint64, PrevIndex: 1, PrevTerm: 1},
		&core.VoteRequest{Term: math.MaxUint64, LastIndex: 1 << 40, LastTerm: 1 << 40, Transfer: true},
	} {
		t.Run(fmt.Sprintf("%T", forged), func(t *testing.T) {
			c := startFixedCluster(t, 3)
			c.commitOne("before")
			lead := c.agreedLeader("before the forged messages")
			li := c.index(lead)
			fi := (li + 1) % 3
			var dropped [3]uint64
			for i, s := range c.systems {
				dropped[i] = s.Node().Stats().DroppedBadMessage
			}

			attacker, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0", ShutdownTimeout: time.Second})
			require.NoError(t, err)
			defer attacker.Stop()
			require.NoError(t, attacker.Send(Ref(c.members[fi]), &peerMsg{From: lead, Msg: forged}))
			require.NoError(t, attacker.Send(Ref(lead), &peerMsg{From: c.members[fi], Msg: forged}))
			// Wait until both arrived: refused (counted as dropped) or,
			// without the bound, taken (the term jumps).
			require.Eventually(t, func() bool {
				for _, i := range []int{li, fi} {
					st, err := c.systems[i].Overview(c.ctx(), c.members[i])
					taken := err == nil && st.Term > core.MaxTerm
					if !taken && c.systems[i].Node().Stats().DroppedBadMessage == dropped[i] {
						return false
					}
				}
				return true
			}, waitFor, 10*time.Millisecond, "the forged messages did not arrive")

			c.agreedLeader("after the forged messages")
			c.commitOne("after")
			c.requireTermsInRange("after the forged messages")

			for i, s := range c.systems {
				require.NoError(t, s.Stop())
				c.systems[i] = nil
			}
			for i := range c.systems {
				c.restart(i)
			}
			c.agreedLeader("after every system restarted")
			c.commitOne("restarted")
			c.requireTermsInRange("after the restart")
		})
	}
}
