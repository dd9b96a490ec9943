package raftserver

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// metricsOf returns member i's metrics as its node reports them.
func (c *cluster) metricsOf(i int) ServerMetrics {
	c.t.Helper()
	for _, m := range c.systems[i].Metrics().Servers {
		if m.ID == c.members[i] {
			return m
		}
	}
	c.t.Fatalf("node %s reports no metrics for %s", c.systems[i].Name(), c.members[i])
	return ServerMetrics{}
}

// waitAppliedEverywhere waits until every member applied index.
func (c *cluster) waitAppliedEverywhere(index uint64) {
	c.t.Helper()
	for i := range c.members {
		require.Eventually(c.t, func() bool { return c.metricsOf(i).Applied >= index },
			waitFor, 10*time.Millisecond, "member %d did not apply %d", i, index)
	}
}

// TestMetricsFollowAScriptedWorkload: the counters move by exactly what a
// scripted workload does: N commands through the leader are N received,
// committed and timed there and N applied everywhere; a command sent to a
// follower is received and rejected there; a leadership transfer is one
// election won by its target and one leader change on every member.
func TestMetricsFollowAScriptedWorkload(t *testing.T) {
	c := startCluster(t, 3)
	c.commitOne("warm up")
	lead := c.agreedLeader("before the workload")
	li := c.index(lead)
	fi := (li + 1) % 3
	s := c.systems[li]

	won := uint64(0)
	for i := range c.members {
		m := c.metricsOf(i)
		require.True(t, m.Running)
		require.Equal(t, "kv", m.Cluster)
		won += m.ElectionsWon
		if i == li {
			require.Equal(t, "leader", m.Role)
			require.GreaterOrEqual(t, m.ElectionsWon, uint64(1))
			require.GreaterOrEqual(t, m.Elections, m.ElectionsWon)
		}
	}
	require.GreaterOrEqual(t, won, uint64(1))

	// Every member applied all there is, so that what follows counts only
	// the workload.
	c.waitAppliedEverywhere(c.metricsOf(li).Commit)
	before := make([]ServerMetrics, 3)
	for i := range c.members {
		before[i] = c.metricsOf(i)
	}
	const n = 20
	for range n {
		_, _, err := s.ProcessCommand(c.ctx(), lead, []byte("set k v"))
		require.NoError(t, err)
	}
	after := c.metricsOf(li)
	require.EqualValues(t, n, after.CommandsReceived-before[li].CommandsReceived)
	require.EqualValues(t, n, after.CommandsCommitted-before[li].CommandsCommitted)
	require.EqualValues(t, n, after.CommitLatency.Since(before[li].CommitLatency).Count)
	require.Zero(t, after.CommandsRejected-before[li].CommandsRejected)
	require.Positive(t, after.CommitLatency.Sum)
	require.Len(t, after.FollowerLag, 2)
	require.Equal(t, after.Commit, after.Applied)
	// Idle again, the followers caught up: the leader says so without
	// anything more to send.
	require.Eventually(t, func() bool {
		m := c.metricsOf(li)
		return len(m.FollowerLag) == 2 && m.FollowerLag[0].Entries == 0 && m.FollowerLag[1].Entries == 0 && m.LastIndex == m.Commit
	}, waitFor, 10*time.Millisecond, "the followers' lag did not reach zero")
	for i := range c.members {
		require.Eventually(t, func() bool {
			m := c.metricsOf(i)
			return m.CommandsApplied-before[i].CommandsApplied == n && m.ApplyLatency.Since(before[i].ApplyLatency).Count == n
		}, waitFor, 10*time.Millisecond, "member %d did not count %d applied commands", i, n)
	}

	// The node's rooms: the WAL wrote the batches, the transport carried
	// them to both peers.
	nm := s.Metrics()
	require.Equal(t, s.Name(), nm.Node)
	require.Positive(t, nm.WAL.Batches)
	require.GreaterOrEqual(t, nm.WAL.Entries, nm.WAL.Batches)
	require.EqualValues(t, nm.WAL.Batches, nm.WAL.Write.Count)
	require.Len(t, nm.Peers, 2)
	for _, p := range nm.Peers {
		require.True(t, p.Up, "peer %s", p.Node)
		require.Positive(t, p.MessagesSent, "peer %s", p.Node)
		require.Positive(t, p.MessagesReceived, "peer %s", p.Node)
	}
	require.Zero(t, nm.FailureDetector.Suspected)

	// Through a follower: it receives the command and refuses it (the
	// caller follows to the leader).
	fb := c.metricsOf(fi)
	_, _, err := c.systems[fi].ProcessCommand(c.ctx(), c.members[fi], []byte("set f v"))
	require.NoError(t, err)
	fa := c.metricsOf(fi)
	require.EqualValues(t, 1, fa.CommandsReceived-fb.CommandsReceived)
	require.EqualValues(t, 1, fa.CommandsRejected-fb.CommandsRejected)
	require.Zero(t, fa.CommandsCommitted-fb.CommandsCommitted)

	// A transfer: one election won by its target, and every member
	// learns of one more leader.
	for i := range c.members {
		before[i] = c.metricsOf(i)
	}
	require.NoError(t, s.TransferLeadership(c.ctx(), lead, c.members[fi]))
	require.Equal(t, c.members[fi], c.agreedLeader("after the transfer"))
	require.Eventually(t, func() bool {
		return c.metricsOf(fi).ElectionsWon-before[fi].ElectionsWon == 1
	}, waitFor, 10*time.Millisecond)
	for i := range c.members {
		require.Eventually(t, func() bool {
			m := c.metricsOf(i)
			return m.LeaderChanges-before[i].LeaderChanges == 1 && m.Leader == c.members[fi]
		}, waitFor, 10*time.Millisecond, "member %d", i)
	}
	require.Equal(t, "leader", c.metricsOf(fi).Role)
	require.Nil(t, c.metricsOf(li).FollowerLag)
}

// TestLazyHistogramsAreMadeOnFirstUse: a server's histograms cost nothing
// until their first observation, read as empty until then, and report
// every observation once made, also when the first ones race.
func TestLazyHistogramsAreMadeOnFirstUse(t *testing.T) {
	m := newServerMetrics(ServerID{Name: "s", Node: "n"}, "c")
	for _, h := range []*lazyHistogram{&m.commitLatency, &m.applyLatency, &m.snapSendLatency, &m.snapInstallLatency} {
		require.Nil(t, h.h.Load())
	}
	sm := m.snapshot()
	require.Zero(t, sm.CommitLatency)
	require.Zero(t, sm.ApplyLatency)
	require.Zero(t, sm.SnapshotSendTime)
	require.Zero(t, sm.SnapshotInstallTime)
	require.Nil(t, m.snapSendLatency.h.Load(), "reading must not make a histogram")

	m.snapInstallLatency.Observe(3 * time.Millisecond)
	m.snapSendLatency.Observe(time.Second)
	m.commitLatency.Observe(time.Millisecond)
	sm = m.snapshot()
	require.EqualValues(t, 1, sm.SnapshotInstallTime.Count)
	require.Equal(t, 3*time.Millisecond, sm.SnapshotInstallTime.Sum)
	require.EqualValues(t, 1, sm.SnapshotSendTime.Count)
	require.Equal(t, time.Second, sm.SnapshotSendTime.Sum)
	require.EqualValues(t, 1, sm.CommitLatency.Count)
	require.Zero(t, sm.ApplyLatency)

	const goroutines, each = 8, 100
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				m.applyLatency.Observe(time.Microsecond)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, goroutines*each, m.snapshot().ApplyLatency.Count)
}
