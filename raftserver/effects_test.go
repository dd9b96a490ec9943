package raftserver

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

// startFX starts a cluster "fx" of the effects machine with one member on
// each system of c.
func (c *cluster) startFX() []ServerID {
	var members []ServerID
	for _, s := range c.systems {
		members = append(members, ServerID{Name: "fx" + strings.ReplaceAll(s.Name(), ":", "_"), Node: s.Name()})
	}
	_, _, err := c.systems[0].StartCluster(c.ctx(), "fx", MachineSpec{Kind: "fx"}, members)
	require.NoError(c.t, err)
	return members
}

func (c *cluster) fx(members []ServerID, cmd string) ([]byte, ServerID) {
	c.t.Helper()
	reply, leader, err := c.systems[0].ProcessCommand(c.ctx(), members[0], []byte(cmd))
	require.NoError(c.t, err, cmd)
	return reply, leader
}

// fxEvents waits until every member's machine recorded want.
func (c *cluster) fxEvents(members []ServerID, want string) {
	c.t.Helper()
	for _, m := range members {
		sys := c.systems[c.index2(m)]
		require.Eventually(c.t, func() bool {
			got, _, err := sys.LocalQuery(c.ctx(), m, []byte("events"))
			return err == nil && strings.Contains(string(got), want)
		}, waitFor, 10*time.Millisecond, "%s records %q", m, want)
	}
}

func (c *cluster) index2(m ServerID) int {
	for i, s := range c.systems {
		if s != nil && s.Name() == m.Node {
			return i
		}
	}
	c.t.Fatalf("no system for %s", m)
	return -1
}

func TestEffectSendAndCallRunOnTheLeaderOnly(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	ib, err := c.systems[1].Node().NewInbox()
	require.NoError(t, err)
	for i := range 5 {
		c.fx(members, fmt.Sprintf("send %s %s hello%d", ib.Ref().Name, ib.Ref().Node, i))
	}
	for i := range 5 {
		m, err := ib.ReceiveTimeout(waitFor)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint("hello", i), m)
	}
	noMessage(t, ib, 200*time.Millisecond)

	// The count is global: a run before this one (-count) counted too.
	fxCalls.Delete("once")
	c.fx(members, "call once")
	require.Eventually(t, func() bool { return fxCallCount("once") == 1 }, waitFor, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, int64(1), fxCallCount("once"), "followers drop effects")
}

func TestEffectMonitorOfAProcessOnAnotherNode(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	_, leader := c.fx(members, "incr")
	// The watched process lives on a node that is not the leader's.
	other := c.systems[(c.index2(leader)+1)%3]
	watched, err := other.Node().Spawn(actor.ProcessFunc(func(*actor.Context, actor.Message) {}))
	require.NoError(t, err)
	c.fx(members, fmt.Sprintf("monitor %s %s", watched.Name, watched.Node))
	require.NoError(t, other.Node().Exit(watched, actor.Reason{Kind: actor.ReasonKilled}))
	// killed, or noproc if the kill won the race with the monitor's
	// registration on the other node: either way one ProcessDown.
	c.fxEvents(members, "down:"+watched.Name+":")
}

func TestEffectMonitorOfAMissingProcessAndANode(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	c.fx(members, fmt.Sprintf("monitor ghost %s", c.systems[1].Name()))
	c.fxEvents(members, "down:ghost:noproc")
	c.fx(members, fmt.Sprintf("monitornode %s", c.systems[2].Name()))
	c.fxEvents(members, "nodeup")
}

func TestEffectDemonitorAndNodeDown(t *testing.T) {
	c := startFixedCluster(t, 3)
	members := c.startFX()
	_, leader := c.fx(members, "incr")
	l := c.index2(leader)
	j, k := (l+1)%3, (l+2)%3

	// A demonitored process goes down unobserved.
	watched, err := c.systems[k].Node().Spawn(actor.ProcessFunc(func(*actor.Context, actor.Message) {}))
	require.NoError(t, err)
	c.fx(members, fmt.Sprintf("monitor %s %s", watched.Name, watched.Node))
	c.fx(members, fmt.Sprintf("demonitor %s %s", watched.Name, watched.Node))
	require.NoError(t, c.systems[k].Node().Exit(watched, actor.Reason{Kind: actor.ReasonKilled}))

	// A monitored node that stops is observed as down by every member
	// left; once demonitored, its next stop is not.
	node := c.systems[j].Name()
	c.fx(members, "monitornode "+node)
	c.fxEvents(members, "nodeup")
	require.NoError(t, c.systems[j].Stop())
	c.systems[j] = nil
	alive := []ServerID{members[l], members[k]}
	c.fxEvents(alive, "nodedown")
	c.restart(j)
	c.fxEvents(alive, "nodedown,nodeup")
	c.fx(members, "demonitornode "+node)
	require.NoError(t, c.systems[j].Stop())
	c.systems[j] = nil
	c.fx(members, "incr") // something to apply after the stop
	time.Sleep(500 * time.Millisecond)
	for _, m := range alive {
		got, _, err := c.systems[c.index2(m)].LocalQuery(c.ctx(), m, []byte("events"))
		require.NoError(t, err)
		require.Equal(t, 1, strings.Count(string(got), "nodedown"), "%s: %s", m, got)
		require.NotContains(t, string(got), "down:"+watched.Name, "%s: the demonitored process", m)
	}
}

func TestEffectTimers(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	c.fx(members, "timer t1 20")
	c.fxEvents(members, "fired:t1")
	// A cancelled timer never fires; a reset one fires once.
	c.fx(members, "timer t2 200")
	c.fx(members, "timer t2 0")
	c.fx(members, "timer t3 50")
	c.fx(members, "timer t3 80")
	c.fxEvents(members, "fired:t3")
	time.Sleep(300 * time.Millisecond)
	got, _, err := c.systems[0].ConsistentQuery(c.ctx(), members[0], []byte("events"))
	require.NoError(t, err)
	require.NotContains(t, string(got), "fired:t2")
	require.Equal(t, 1, strings.Count(string(got), "fired:t3"))
}

func TestEffectTimerSurvivesALeaderChange(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	_, leader := c.fx(members, "timer slow 1500")
	var target ServerID
	for _, m := range members {
		if m != leader {
			target = m
			break
		}
	}
	require.NoError(t, c.systems[0].TransferLeadership(c.ctx(), members[0], target))
	// The old leader's timer was dropped; the new leader re-armed it in
	// StateEnter from the machine's state, so it fires exactly once.
	c.fxEvents(members, "fired:slow")
	time.Sleep(2 * time.Second)
	got, _, err := c.systems[0].ConsistentQuery(c.ctx(), members[0], []byte("events"))
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(got), "fired:slow"), "events: %s", got)
}

func TestEffectReadLog(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	idx, _ := c.fx(members, "store a-large-payload")
	ib, err := c.systems[0].Node().NewInbox()
	require.NoError(t, err)
	c.fx(members, fmt.Sprintf("readlog %s %s %s", idx, ib.Ref().Name, ib.Ref().Node))
	m, err := ib.ReceiveTimeout(waitFor)
	require.NoError(t, err)
	require.Equal(t, "store a-large-payload", m)
}

func TestTickAndOverview(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	_, leader := c.fx(members, "incr")
	require.Eventually(t, func() bool {
		st, err := c.systems[0].Overview(c.ctx(), leader)
		return err == nil && st.Machine["count"] == "1" && st.Machine["ticks"] != "0"
	}, waitFor, 10*time.Millisecond)
	for _, m := range members {
		if m == leader {
			continue
		}
		st, err := c.systems[0].Overview(c.ctx(), m)
		require.NoError(t, err)
		require.Equal(t, "0", st.Machine["ticks"], "only the leader ticks")
	}
}

func TestEffectsAreNotRepeatedAfterARestart(t *testing.T) {
	c := startFixedCluster(t, 2)
	// One member on the second node: after its restart it leads again and
	// replays its whole log; the entries up to the last applied index it
	// saved at stop must not send their messages a second time.
	solo := ServerID{Name: "fxsolo", Node: c.systems[1].Name()}
	_, _, err := c.systems[0].StartCluster(c.ctx(), "fxsolo", MachineSpec{Kind: "fx"}, []ServerID{solo})
	require.NoError(t, err)
	ib, err := c.systems[0].Node().NewInbox()
	require.NoError(t, err)
	for i := range 10 {
		_, _, err := c.systems[0].ProcessCommand(c.ctx(), solo, []byte(fmt.Sprintf("send %s %s m%d", ib.Ref().Name, ib.Ref().Node, i)))
		require.NoError(t, err)
	}
	for range 10 {
		_, err := ib.ReceiveTimeout(waitFor)
		require.NoError(t, err)
	}
	require.NoError(t, c.systems[1].Stop())
	c.systems[1] = nil
	c.restart(1)
	reply, _, err := c.systems[0].ProcessCommand(c.ctx(), solo, []byte("incr"))
	require.NoError(t, err)
	require.Equal(t, "1", string(reply), "the machine state was rebuilt")
	noMessage(t, ib, 300*time.Millisecond)
}

func noMessage(t *testing.T, ib *actor.Inbox, d time.Duration) {
	t.Helper()
	select {
	case m := <-ib.C():
		t.Fatalf("unexpected message %T %v", m, m)
	case <-time.After(d):
	}
}

func TestPoisonCommandLeavesTheStateAsBeforeOnEveryMember(t *testing.T) {
	c := startFixedCluster(t, 3)
	members := c.startFX()
	c.fx(members, "incr")
	_, _, err := c.systems[0].ProcessCommand(c.ctx(), members[0], []byte("badset k poisoned"))
	require.ErrorIs(t, err, ErrMachine)
	reply, _ := c.fx(members, "incr")
	require.Equal(t, "2", string(reply), "the server keeps serving, state intact")
	check := func() {
		for _, m := range members {
			sys := c.systems[c.index2(m)]
			require.Eventually(t, func() bool {
				got, _, err := sys.LocalQuery(c.ctx(), m, []byte("get k"))
				cnt, _, err2 := sys.LocalQuery(c.ctx(), m, []byte("count"))
				return err == nil && err2 == nil && string(got) == "" && string(cnt) == "2"
			}, waitFor, 10*time.Millisecond, "member %s: the poison command left no trace", m)
		}
	}
	check()
	// After a full restart every member replays the log, meets the same
	// panic at the same index, and ends in the same state.
	for i := range c.systems {
		require.NoError(t, c.systems[i].Stop())
		c.systems[i] = nil
	}
	for i := range c.systems {
		c.restart(i)
	}
	check()
}

func TestSessionsApplyRetriesOnce(t *testing.T) {
	c := startFixedCluster(t, 3)
	members := c.startFX()
	s := c.systems[0]
	sess := s.NewSession()
	reply, leader, err := sess.ProcessCommand(c.ctx(), members[0], []byte("incr"))
	require.NoError(t, err)
	require.Equal(t, "1", string(reply))

	// The same sequence number again, as a retry after a lost reply would
	// send it, is answered from the session: no second application.
	req := &commandReq{Data: []byte("incr"), Session: true, Client: sess.ID(), Seq: 1}
	again, _, err := s.processCommand(c.ctx(), leader, req)
	require.NoError(t, err)
	require.Equal(t, "1", string(again))

	// Also through another leader, and after a restart of every node.
	var target ServerID
	for _, m := range members {
		if m != leader {
			target = m
			break
		}
	}
	require.NoError(t, s.TransferLeadership(c.ctx(), members[0], target))
	again, _, err = s.processCommand(c.ctx(), target, req)
	require.NoError(t, err)
	require.Equal(t, "1", string(again))
	reply, _, err = sess.ProcessCommand(c.ctx(), target, []byte("incr"))
	require.NoError(t, err)
	require.Equal(t, "2", string(reply))

	for i := range c.systems {
		require.NoError(t, c.systems[i].Stop())
		c.systems[i] = nil
	}
	for i := range c.systems {
		c.restart(i)
	}
	s = c.systems[0]
	// seq 2 was not confirmed yet: its reply survives the restart, seq 1's
	// was dropped when the client confirmed it.
	req2 := &commandReq{Data: []byte("incr"), Session: true, Client: sess.ID(), Seq: 2, Responded: 1}
	again, _, err = s.processCommand(c.ctx(), members[0], req2)
	require.NoError(t, err)
	require.Equal(t, "2", string(again), "the session table was rebuilt by the replay")
	_, _, err = s.processCommand(c.ctx(), members[0], req)
	require.ErrorIs(t, err, ErrSessionStale)
	got, _, err := s.ConsistentQuery(c.ctx(), members[0], []byte("count"))
	require.NoError(t, err)
	require.Equal(t, "2", string(got))
}

func TestSessionRetriesAfterAnInjectedTimeout(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	sess := c.systems[0].NewSession()
	// The command takes 400 ms to apply; the first attempt times out
	// before its reply (it gets a third of 1.5 s) and the retry with the
	// same sequence number gets the first application's reply.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	reply, _, err := sess.ProcessCommand(ctx, members[0], []byte("slowincr 600"))
	require.NoError(t, err)
	require.Equal(t, "1", string(reply))
	got, _, err := c.systems[0].ConsistentQuery(c.ctx(), members[0], []byte("count"))
	require.NoError(t, err)
	require.Equal(t, "1", string(got), "applied once")
	_ = fmt.Sprint
}

// TestSessionRetriesThroughOtherMembers: ProcessCommandAny skips a via
// that has no such server, and its retry after a timeout goes through the
// next member with the same sequence number: the command applies once.
func TestSessionRetriesThroughOtherMembers(t *testing.T) {
	c := startCluster(t, 3)
	members := c.startFX()
	sess := c.systems[0].NewSession()
	missing := ServerID{Name: "nope", Node: members[1].Node}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	reply, _, err := sess.ProcessCommandAny(ctx, []ServerID{missing, members[1], members[2]}, []byte("slowincr 600"))
	require.NoError(t, err)
	require.Equal(t, "1", string(reply))
	got, _, err := c.systems[0].ConsistentQuery(c.ctx(), members[0], []byte("count"))
	require.NoError(t, err)
	require.Equal(t, "1", string(got), "applied once")

	_, _, err = sess.ProcessCommandAny(ctx, nil, []byte("incr"))
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, _, err = sess.ProcessCommand(ctx, missing, []byte("incr"))
	require.ErrorIs(t, err, ErrNoSuchServer, "with one via, a missing server is the answer")
}
